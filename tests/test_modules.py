"""Lightning modules: training lowers the loss, metrics are right on known inputs, nets are plain."""

from functools import partial

import lightning as L
import pytest
import torch
from torch import nn

from src.datamodules import RegressionDataModule, ToyPointsDataModule
from src.errors import UserInputError
from src.modules import ClassificationModule, RegressionModule
from src.modules.nets import MLP


def quick_trainer(epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def loss_on(module: L.LightningModule, split: tuple[torch.Tensor, torch.Tensor]) -> float:
    module.eval()
    with torch.no_grad():
        loss = module.compute_loss(module(split[0]), split[1]).item()
    module.train()
    return loss


@pytest.mark.parametrize("dataset", ["circles", "blobs"])
def test_a_few_epochs_lower_the_classification_loss(dataset: str) -> None:
    torch.manual_seed(0)
    dm = ToyPointsDataModule(dataset=dataset)
    dm.setup()
    module = ClassificationModule(
        net=partial(MLP, hidden_sizes=[32, 32]),
        input_shape=dm.input_shape,
        num_classes=dm.num_classes,
        optimizer=partial(torch.optim.Adam, lr=0.01),
    )
    before = loss_on(module, dm.splits["train"])
    quick_trainer(30).fit(module, datamodule=dm)
    assert loss_on(module, dm.splits["train"]) < 0.7 * before


def test_a_few_epochs_lower_the_regression_loss() -> None:
    torch.manual_seed(0)
    dm = RegressionDataModule(source="wave")
    dm.setup()
    module = RegressionModule(net=partial(MLP, hidden_sizes=[32]), optimizer=partial(torch.optim.Adam, lr=0.05))
    before = loss_on(module, dm.splits["train"])
    quick_trainer(50).fit(module, datamodule=dm)
    assert loss_on(module, dm.splits["train"]) < 0.5 * before


def test_a_regression_loss_takes_targets_of_shape_n_and_refuses_a_count_that_does_not_fit() -> None:
    """A user's data module may give targets of shape N for a net's N x 1 outputs: the loss must be the
    per-sample MSE, not the N x N broadcast of every output against every target."""
    module = RegressionModule(net=partial(MLP, hidden_sizes=[]), standardize_target=False)
    outputs = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert module.compute_loss(outputs, torch.tensor([1.0, 2.0, 3.0, 4.0])).item() == 0.0
    assert module.compute_loss(outputs, torch.tensor([[2.0], [2.0], [3.0], [4.0]])).item() == pytest.approx(0.25)
    with pytest.raises(UserInputError, match=r"targets have shape \(4, 2\) but the net's outputs \(4, 1\)"):
        module.compute_loss(outputs, torch.zeros(4, 2))


class FixedOutputs(nn.Module):
    """A 'net' that returns the rows of a fixed table, to check metrics on known inputs."""

    def __init__(self, in_features: int, out_features: int, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index.long().flatten()]


def test_classification_metrics_are_right_on_known_predictions() -> None:
    # 6 samples of 3 classes; predictions right on 4 of 6: class 0 2/2, class 1 1/2, class 2 1/2.
    logits = torch.eye(3)[[0, 0, 1, 0, 2, 1]]
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    module = ClassificationModule(net=partial(FixedOutputs, table=logits), input_shape=(1,), num_classes=3)
    batch = (torch.arange(6).unsqueeze(1), targets)
    module._update_metrics("test", torch.tensor(0.0), module(batch[0]), targets)
    module.test_class_stats.update(module.labels(module(batch[0])), targets)
    values = module.test_metrics.compute()
    assert values["test/acc"].item() == pytest.approx(4 / 6)
    accuracy = module.class_accuracy("test")
    assert list(accuracy) == [0, 1, 2] and [v.item() for v in accuracy.values()] == pytest.approx([1.0, 0.5, 0.5])
    # macro F1: class 0 precision 2/3 recall 1 -> 0.8; class 1 1/2,1/2 -> 0.5; class 2 1,1/2 -> 2/3
    assert values["test/f1"].item() == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # A split without class 1 (a test folder of some classes): class 1 has no accuracy, not 0.
    module.test_class_stats.update(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 2, 2]))
    accuracy = module.class_accuracy("test")
    assert list(accuracy) == [0, 2] and [v.item() for v in accuracy.values()] == pytest.approx([0.5, 0.5])


def test_binary_f1_is_the_positive_class_f1_as_documented() -> None:
    # Predicted 1,1,1,1,0 for true 1,1,1,0,0: class 1 has precision 3/4 and recall 1, so F1 6/7
    # (scikit-learn's default); the macro average over both classes would be 0.762.
    logits = torch.tensor([[5.0], [5.0], [5.0], [5.0], [-5.0]])
    targets = torch.tensor([1, 1, 1, 0, 0])
    module = ClassificationModule(net=partial(FixedOutputs, table=logits), input_shape=(1,), num_classes=2)
    module._update_metrics("test", torch.tensor(0.0), module(torch.arange(5).unsqueeze(1)), targets)
    values = module.test_metrics.compute()
    assert values["test/f1"].item() == pytest.approx(6 / 7) and values["test/acc"].item() == pytest.approx(4 / 5)


def test_binary_head_has_one_logit_and_gives_two_class_probabilities() -> None:
    module = ClassificationModule(net=partial(MLP, hidden_sizes=[4]), input_shape=(2,), num_classes=2)
    assert module.net.layers[-1].out_features == 1
    probabilities = module.probabilities(torch.tensor([[0.0], [100.0]]))
    assert torch.allclose(probabilities, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))


def test_regression_metrics_are_right_on_known_predictions() -> None:
    predictions = torch.tensor([[1.0], [2.0], [4.0]])
    targets = torch.tensor([[1.0], [3.0], [3.0]])
    module = RegressionModule(net=partial(FixedOutputs, table=predictions), input_shape=(1,))
    module._update_metrics("val", torch.tensor(0.0), module(torch.arange(3).unsqueeze(1)), targets)
    values = module.val_metrics.compute()
    assert values["val/mse"].item() == pytest.approx(2 / 3)
    assert values["val/mae"].item() == pytest.approx(2 / 3)
    assert values["val/r2"].item() == pytest.approx(1 - 2 / (8 / 3), rel=1e-5)


def test_a_net_of_no_hidden_layers_is_linear_regression() -> None:
    net = MLP(3, 1, hidden_sizes=[])
    assert [type(m) for m in net.layers] == [nn.Linear]


def test_the_net_is_a_plain_module_that_loads_without_lightning() -> None:
    module = ClassificationModule(net=partial(MLP, hidden_sizes=[8], batch_norm=True, dropout=0.1), input_shape=(2,))
    bare = MLP(2, 1, hidden_sizes=[8], batch_norm=True, dropout=0.1)
    bare.load_state_dict(module.net.state_dict())
    bare.eval(), module.eval()
    x = torch.randn(5, 2)
    assert torch.equal(bare(x), module(x))


def test_impossible_module_values_are_user_errors() -> None:
    with pytest.raises(UserInputError, match="num_classes >= 2"):
        ClassificationModule(net=MLP, num_classes=1)
    with pytest.raises(UserInputError, match="net could not be built"):
        ClassificationModule(net=partial(MLP, hidden_sizes=[0]))
