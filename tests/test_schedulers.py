"""Every LR schedule runs under the Trainer and shapes the learning rate as documented."""

from functools import partial

import lightning as L
import pytest
import torch

from src.datamodules import ToyPointsDataModule
from src.errors import UserInputError
from src.modules import ClassificationModule
from src.modules.nets import MLP
from src.modules.optimization import SchedulerConfig, build_scheduler

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


class LRRecorder(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def lrs_under(scheduler: SchedulerConfig, epochs: int = 6, optimizer: str = "sgd") -> list[float]:
    dm = ToyPointsDataModule(n_samples=100, batch_size=35)
    module = ClassificationModule(
        net=partial(MLP, hidden_sizes=[4]), optimizer=partial(OPTIMIZERS[optimizer], lr=0.1), scheduler=scheduler
    )
    recorder = LRRecorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=dm)
    return recorder.lrs


def test_constant() -> None:
    assert lrs_under(SchedulerConfig(name="none")) == pytest.approx([0.1] * 6)


def test_step() -> None:
    assert lrs_under(SchedulerConfig(name="step", step_size=2, gamma=0.5)) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    )


def test_exponential_with_a_final_lr_derives_gamma_from_the_epochs() -> None:
    lrs = lrs_under(SchedulerConfig(name="exponential", final_lr=0.1 * 0.5**6), epochs=6)
    assert lrs == pytest.approx([0.1 * 0.5**k for k in range(6)])


def test_cosine_reaches_final_lr_with_warmup_first() -> None:
    lrs = lrs_under(SchedulerConfig(name="cosine", warmup_epochs=2, final_lr=0.0), epochs=6)
    assert lrs[0] == pytest.approx(0.1 / 3) and lrs[1] < lrs[2] == pytest.approx(0.1)
    assert lrs[2] > lrs[3] > lrs[4] > lrs[5] > 0


def test_onecycle_steps_every_batch() -> None:
    lrs = lrs_under(SchedulerConfig(name="onecycle", pct_start=0.3), epochs=6)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) > 0.08 and lrs[-1] < lrs[2]


def test_plateau_uses_its_monitor() -> None:
    lrs = lrs_under(
        SchedulerConfig(name="plateau", monitor="val/loss", patience=0, factor=0.5), epochs=6, optimizer="adam"
    )
    assert lrs[0] == pytest.approx(0.1) and all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))


def test_impossible_combinations_are_user_errors() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(UserInputError, match="its own warm-up"):
        build_scheduler(optimizer, SchedulerConfig(name="onecycle", warmup_epochs=1), 10, 100)
    with pytest.raises(UserInputError, match="must be below trainer.max_epochs"):
        build_scheduler(optimizer, SchedulerConfig(name="cosine", warmup_epochs=10), 10, 100)
    with pytest.raises(UserInputError, match="needs trainer.max_epochs"):
        build_scheduler(optimizer, SchedulerConfig(name="cosine"), None, 100)
