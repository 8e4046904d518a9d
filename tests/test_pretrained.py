"""Pretrained backbones (TorchvisionNet), unfreezing them after N epochs (UnfreezeBackbone) and
starting a new task from a checkpoint's net (`init_from`). Offline: no test touches the network."""

import json
import shutil
import urllib.error
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.io import write_png

from src.datamodules import ImageFolderDataModule
from src.errors import UserInputError
from src.modules import ClassificationModule
from src.modules.nets import AirbenchNet, TorchvisionNet, head_name
from src.modules.nets.torchvision_net import weights_entry
from src.modules.task import load_net_weights
from tests.conftest import QUIET, config, run_cli


def class_tree(root: Path, classes: list[str], per_class: int, size: int = 16, seed: int = 0) -> Path:
    """train/<class>/*.png with a class-dependent colour plus noise (learnable, tiny)."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(0, 256, 3)
        for image_index in range(per_class):
            noise = rng.integers(-60, 60, (3, size, size))
            pixels = np.clip(colour[:, None, None] + noise, 0, 255).astype(np.uint8)
            write_png(torch.from_numpy(pixels), str(folder / f"{index}_{image_index:03d}.png"))
    return root


def folder_run(name: str, tree: Path, tmp_path: Path, batch_size: int) -> list[str]:
    """configs/<name>.yaml on an image tree at 16 x 16, 20% held out, the cache in tmp_path."""
    return [
        "--config",
        config(name),
        "--data.data_dir",
        str(tree),
        "--data.image_size",
        "16",
        "--data.val_size",
        "0.2",
        "--data.batch_size",
        str(batch_size),
        "--data.cache_dir",
        str(tmp_path / "cache"),
    ]


def tiny_run(tree: Path, tmp_path: Path, *extra: str) -> list[str]:
    """configs/image_folder.yaml at 16 x 16 with an 8/8/8 AirbenchNet: seconds on a CPU."""
    return [
        *folder_run("image_folder", tree, tmp_path, batch_size=16),
        "--model.net.init_args.widths",
        "[8, 8, 8]",
        "--trainer.log_every_n_steps",
        "1",
        *QUIET,
        *extra,
    ]


# --- TorchvisionNet ---------------------------------------------------------------------------
def test_a_local_weights_file_is_loaded_except_the_replaced_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = torchvision.models.get_model("resnet18", weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    saved = torch.load(path, weights_only=True)
    net = TorchvisionNet((3, 32, 32), 3, name="resnet18", weights=str(path))
    loaded = net.model.state_dict()
    assert net.head_name == "model.fc" and net.model.fc.weight.shape == (3, 512)
    assert set(loaded) == set(saved)
    for key, tensor in saved.items():
        if key.startswith("fc."):
            assert loaded[key].shape != tensor.shape
        else:
            assert torch.equal(loaded[key], tensor), key
    # A local file takes the preprocessing of the architecture's DEFAULT weights (ImageNet's).
    assert net.image_size == 224 and net.mean == [0.485, 0.456, 0.406]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_googlenets_weights_load_without_its_auxiliary_heads_and_get_its_own_input_scaling(tmp_path: Path) -> None:
    """torchvision's GoogLeNet weights hold its auxiliary heads (this net trains on the main output
    only) and take pixels standardised by 0.5 and 0.5, as torchvision's `transform_input` makes them."""
    torch.manual_seed(0)
    source = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(source.state_dict(), path)
    net = TorchvisionNet((3, 64, 64), 5, name="googlenet", weights=str(path), image_size=64).eval()
    assert net.mean == [0.5] * 3 and net.std == [0.5] * 3
    loaded = net.model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in source.state_dict().items() if key in loaded
               and not key.startswith("fc."))  # fmt: skip
    # The backbone's features for raw pixels equal torchvision's, fed ImageNet-standardised pixels
    # with transform_input on (what its pretrained builder sets).
    pixels = torch.rand(2, 3, 64, 64)
    source.transform_input, source.fc, net.model.fc = True, torch.nn.Identity(), torch.nn.Identity()
    imagenet = (pixels - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net.model(net.adapter(pixels)), source(imagenet), atol=1e-5)


def test_a_weights_file_of_another_architecture_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict(), path)
    with pytest.raises(UserInputError, match="does not fit this model") as error:
        TorchvisionNet((3, 32, 32), 3, name="resnet18", weights=str(path))
    assert "\n" not in str(error.value)
    lightning_checkpoint = tmp_path / "run.ckpt"
    torch.save({"state_dict": {}}, lightning_checkpoint)
    with pytest.raises(UserInputError, match="model.init_from"):
        TorchvisionNet((3, 32, 32), 3, name="resnet18", weights=str(lightning_checkpoint))
    with pytest.raises(UserInputError, match="no such file"):
        TorchvisionNet((3, 32, 32), 3, name="resnet18", weights=str(tmp_path / "absent.pth"))


def test_torchvision_weights_names_resolve_to_their_enum_entries() -> None:
    weights = torchvision.models.ResNet18_Weights
    assert weights_entry("resnet18", "IMAGENET1K_V1") is weights.IMAGENET1K_V1
    assert weights_entry("resnet18", "DEFAULT") is weights.DEFAULT is weights.IMAGENET1K_V1
    assert weights_entry("efficientnet_b0", "DEFAULT") is torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1
    with pytest.raises(UserInputError, match="IMAGENET1K_V1") as error:
        weights_entry("resnet18", "IMAGENET1K_V7")
    assert "local state_dict file" in str(error.value)


def test_offline_download_is_one_line_naming_the_local_file_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(UserInputError) as error:
        TorchvisionNet((3, 32, 32), 10, name="resnet18", weights="DEFAULT")
    message = str(error.value)
    assert calls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert "\n" not in message and "Temporary failure" in message
    assert "--model.net.init_args.weights resnet18.pth" in message and "IMAGENET1K_V1" in message


def test_downloaded_weights_bring_their_preprocessing(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    served = torchvision.models.get_model("resnet18", weights=None).state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda url, *a, **k: served)
    cifar_mean, cifar_std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    net = TorchvisionNet((3, 32, 32), 10, weights="IMAGENET1K_V1", data_mean=cifar_mean, data_std=cifar_std)
    assert torch.equal(net.model.layer1[0].conv1.weight, served["layer1.0.conv1.weight"])
    assert (net.image_size, net.mean, net.std) == (224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    # The adapter turns CIFAR-standardised 32 x 32 images into ImageNet-standardised 224 x 224 ones.
    raw = torch.rand(2, 3, 32, 32)
    cifar = (raw - torch.tensor(cifar_mean).view(3, 1, 1)) / torch.tensor(cifar_std).view(3, 1, 1)
    imagenet = (raw - torch.tensor(net.mean).view(3, 1, 1)) / torch.tensor(net.std).view(3, 1, 1)
    expected = torch.nn.functional.interpolate(imagenet, size=(224, 224), mode="bilinear", antialias=True)
    assert torch.allclose(net.adapter(cifar), expected, atol=1e-5)
    # The config can keep the data's size; random init never resizes.
    assert TorchvisionNet((3, 32, 32), 10, weights="DEFAULT", image_size="data").image_size is None
    assert TorchvisionNet((3, 32, 32), 10).image_size is None


@pytest.mark.parametrize(
    "name, head", [("mobilenet_v3_small", "model.classifier.3"), ("squeezenet1_0", "model.classifier.1")]
)
def test_the_head_is_found_and_replaced_in_other_families(name: str, head: str) -> None:
    net = TorchvisionNet((1, 32, 32), 4, name=name, freeze_backbone=True)
    assert net.head_name == head
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(head + ".") for n in trainable)
    net.eval()  # grayscale is repeated to three channels
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 4)


def test_the_finetune_config_trains_offline_from_a_local_weights_file(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = class_tree(tmp_path / "tree", ["a", "b", "c"], per_class=8)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), path)
    unfreeze_later = '[{"class_path": "src.callbacks.UnfreezeBackbone", "init_args": {"unfreeze_at_epoch": 1}}]'
    args = [
        *folder_run("finetune_resnet", tree, tmp_path, batch_size=8),
        "--model.net.init_args.weights",
        str(path),
        "--model.net.init_args.image_size",
        "data",  # 16 x 16 here: resizing to 224 would only cost time
        "--trainer.max_epochs",
        "1",
        "--trainer.callbacks",
        unfreeze_later,
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    checkpoint = torch.load(next((in_tmp / "lightning_logs").rglob("last.ckpt")), weights_only=True)
    saved = torch.load(path, weights_only=True)
    state = checkpoint["state_dict"]
    assert torch.equal(state["net.model.layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])  # frozen
    assert state["net.model.fc.weight"].shape == (3, 512)
    # With --ckpt_path the checkpoint brings the weights: the weights file is not read again.
    path.unlink()
    # The config as shipped (weights: DEFAULT, which offline cannot download) predicts with the checkpoint:
    # where the starting weights came from does not change the net, nor its preprocessing.
    (tmp_path / "one.png").write_bytes((tree / "train" / "a" / "0_000.png").read_bytes())
    shipped = [arg for arg in args if arg not in ("--model.net.init_args.weights", str(path))]
    predict = ["predict", *shipped, "--ckpt_path", "last", "--input", str(tmp_path / "one.png")]
    assert run_cli(*predict, "--output", str(tmp_path / "one.csv")) == 0
    assert (tmp_path / "one.csv").read_text().splitlines()[0] == "file,class,probability,p_a,p_b,p_c"
    # Resuming trains on: a backbone frozen by a flag makes another run than the checkpoint's, refused
    capsys.readouterr()
    frozen = ["--model.net.init_args.freeze_backbone", "true", "--trainer.max_epochs", "2"]
    assert run_cli("fit", *args, "--ckpt_path", "last", *frozen) == 2
    assert "model.net.init_args.freeze_backbone is True here but False in" in capsys.readouterr().err
    # Export rebuilds the bare net from model.json without the weights file (they are in the state_dict).
    out = tmp_path / "export"
    formats = ["--formats", "[state_dict, torchscript]", "--output_dir", str(out)]
    assert run_cli("export", *args, "--ckpt_path", "last", *formats) == 0
    record = json.loads((out / "model.json").read_text())
    assert record["net"]["init_args"]["weights"] is None and record["net"]["init_args"]["image_size"] == "data"
    assert set(record["files"]) == {"state_dict", "torchscript"}


def test_weights_null_on_the_command_line_means_random_initialisation(in_tmp: Path, tmp_path: Path) -> None:
    """README and the config say `null` starts from random weights; given as a flag too, not only in YAML."""
    tree = class_tree(tmp_path / "tree", ["a", "b"], per_class=4)
    args = [
        *folder_run("finetune_resnet", tree, tmp_path, batch_size=8),
        "--model.net.init_args.weights",
        "null",
        "--model.net.init_args.image_size",
        "data",
        "--trainer.max_epochs",
        "1",
        "--trainer.callbacks",
        "[]",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    state = torch.load(next((in_tmp / "lightning_logs").rglob("last.ckpt")), weights_only=True)["state_dict"]
    assert state["net.model.fc.weight"].shape == (1, 512)


# --- UnfreezeBackbone -------------------------------------------------------------------------
class BackboneProbe(Callback):
    """Writes, per training epoch, what the backbone and head of an AirbenchNet did (JSON lines)."""

    def __init__(self, path: str, stop_after_epoch: int | None = None) -> None:
        self.path = Path(path)
        self.stop_after_epoch = stop_after_epoch
        self.record: dict[str, object] = {}

    def _watched(self, pl_module: LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        return pl_module.net.groups[0].conv1.weight, pl_module.net.head.weight

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        backbone, head = self._watched(pl_module)
        self.record = {
            "epoch": trainer.current_epoch,
            "requires_grad": backbone.requires_grad,
            "before": backbone.detach().clone(),
            "head_before": head.detach().clone(),
            "grads": [],
        }

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: object) -> None:
        grad = self._watched(pl_module)[0].grad
        self.record["grads"].append(0.0 if grad is None else grad.abs().sum().item())  # type: ignore[union-attr]

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        backbone, head = self._watched(pl_module)
        optimizer = trainer.optimizers[0]
        line = {
            "epoch": self.record["epoch"],
            "requires_grad": self.record["requires_grad"],
            "max_grad": max(self.record["grads"]),  # type: ignore[type-var]
            "backbone_changed": not torch.equal(self.record["before"], backbone),  # type: ignore[arg-type]
            "head_changed": not torch.equal(self.record["head_before"], head),  # type: ignore[arg-type]
            "groups": [len(g["params"]) for g in optimizer.param_groups],
            "lrs": [g["lr"] for g in optimizer.param_groups],
        }
        with self.path.open("a") as file:
            file.write(json.dumps(line) + "\n")
        if self.stop_after_epoch == trainer.current_epoch:
            trainer.should_stop = True


def probe_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_fit_that_ends_before_the_unfreeze_epoch_still_tests_its_best_checkpoint(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A short run (a debug preset, an early stop) ends with the backbone still frozen; the test of
    its best checkpoint that follows trains nothing and must not try to freeze it again."""
    tree = class_tree(tmp_path / "tree", ["a", "b", "c"], per_class=8)
    shutil.copytree(tree / "train", tree / "test")
    later = '[{"class_path": "src.callbacks.UnfreezeBackbone", "init_args": {"unfreeze_at_epoch": 2}}]'
    run = tiny_run(tree, tmp_path, "--trainer.max_epochs", "1", "--trainer.callbacks", later)
    assert run_cli("fit", *run) == 0
    assert "test/acc" in capsys.readouterr().out


def test_a_run_resumed_mid_epoch_after_the_unfreeze_trains_the_backbone_at_once(in_tmp: Path, tmp_path: Path) -> None:
    """Lightning skips on_train_epoch_start for an epoch resumed mid-way: the backbone, unfrozen in that
    epoch before the stop, must train in its remaining steps too, as without the stop."""
    tree = class_tree(tmp_path / "tree", ["a", "b", "c", "d"], per_class=10)
    unfreeze = {"class_path": "src.callbacks.UnfreezeBackbone", "init_args": {"unfreeze_at_epoch": 1}}
    stop = {"class_path": "tests.helpers.SignalAtBatch", "init_args": {"epoch": 1, "batch": 0, "signum": 15}}
    run = tiny_run(tree, tmp_path, "--trainer.max_epochs", "2", "--data.batch_size", "8")  # 4 steps an epoch
    assert run_cli("fit", *run, "--trainer.callbacks", json.dumps([unfreeze, stop])) == 143
    last = next((in_tmp / "lightning_logs").rglob("last.ckpt"))

    def backbone() -> dict[str, torch.Tensor]:
        state = torch.load(last, weights_only=True)["state_dict"]
        return {key: value for key, value in state.items() if key.startswith("net.groups.") and value.dim() == 4}

    stopped = backbone()
    assert stopped and torch.load(last, weights_only=True)["global_step"] == 5  # epoch 1's first step
    assert run_cli("fit", *run, "--trainer.callbacks", json.dumps([unfreeze]), "--ckpt_path", "last") == 0
    assert all(not torch.equal(stopped[key], value) for key, value in backbone().items())


def test_the_backbone_trains_only_from_the_unfreeze_epoch_and_resumes(in_tmp: Path, tmp_path: Path) -> None:
    tree = class_tree(tmp_path / "tree", ["a", "b", "c", "d"], per_class=10)
    log = tmp_path / "probe.jsonl"

    def callbacks(stop: int | None) -> str:
        return json.dumps(
            [
                {"class_path": "src.callbacks.PatchWhitening"},
                {"class_path": "src.callbacks.UnfreezeBackbone", "init_args": {"unfreeze_at_epoch": 2}},
                {
                    "class_path": "tests.test_pretrained.BackboneProbe",
                    "init_args": {"path": str(log), "stop_after_epoch": stop},
                },
            ]
        )

    run = tiny_run(tree, tmp_path, "--trainer.max_epochs", "4", "--data.batch_size", "8")  # 4 steps an epoch
    assert run_cli("fit", *run, "--trainer.callbacks", callbacks(2)) == 0  # stops after epochs 0, 1, 2
    first = probe_lines(log)
    assert [line["epoch"] for line in first] == [0, 1, 2]
    for line in first[:2]:  # frozen: no gradient reaches the backbone, only the head learns
        assert not line["requires_grad"] and line["max_grad"] == 0 and not line["backbone_changed"]
        assert line["head_changed"] and len(line["groups"]) == 1
    unfrozen = first[2]
    assert unfrozen["requires_grad"] and unfrozen["max_grad"] > 0 and unfrozen["backbone_changed"]
    assert len(unfrozen["groups"]) == 2 and unfrozen["lrs"][1] == pytest.approx(unfrozen["lrs"][0] * 0.1)

    log.unlink()
    assert run_cli("fit", *run, "--trainer.callbacks", callbacks(None), "--ckpt_path", "last") == 0
    (resumed,) = probe_lines(log)  # epoch 3 only, with the optimizer's two groups loaded from the checkpoint
    assert resumed["epoch"] == 3 and resumed["requires_grad"] and resumed["backbone_changed"]
    assert resumed["groups"] == unfrozen["groups"]
    assert resumed["lrs"][1] == pytest.approx(resumed["lrs"][0] * 0.1)  # the schedule drives both groups
    assert resumed["lrs"][0] < unfrozen["lrs"][0]  # one-cycle's annealing went on
    checkpoint = torch.load(next((in_tmp / "lightning_logs").rglob("last.ckpt")), weights_only=True)
    assert len(checkpoint["optimizer_states"][0]["param_groups"]) == 2


def test_a_backbone_unfrozen_from_the_start_trains_at_its_lower_rate(in_tmp: Path, tmp_path: Path) -> None:
    tree = class_tree(tmp_path / "tree", ["a", "b"], per_class=8)
    log = tmp_path / "probe.jsonl"
    callbacks = [
        {"class_path": "src.callbacks.UnfreezeBackbone", "init_args": {"unfreeze_at_epoch": 0, "lr_factor": 0.1}},
        {"class_path": "tests.test_pretrained.BackboneProbe", "init_args": {"path": str(log)}},
    ]
    run = tiny_run(tree, tmp_path, "--trainer.max_epochs", "1", "--data.batch_size", "8")
    assert run_cli("fit", *run, "--trainer.callbacks", json.dumps(callbacks)) == 0
    (line,) = probe_lines(log)
    assert line["requires_grad"] and line["backbone_changed"] and len(line["groups"]) == 2
    assert line["lrs"][1] == pytest.approx(line["lrs"][0] * 0.1)


# --- init_from: a new task from a checkpoint's net ----------------------------------------------
def test_a_three_class_task_starts_from_a_ten_class_checkpoint(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ten = class_tree(tmp_path / "ten", [f"class{i}" for i in range(10)], per_class=6)
    assert run_cli("fit", *tiny_run(ten, tmp_path, "--trainer.max_epochs", "2")) == 0
    checkpoint = next((in_tmp / "lightning_logs").rglob("last.ckpt"))
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]

    three = class_tree(tmp_path / "three", ["cat", "dog", "fox"], per_class=8, seed=1)
    data = ImageFolderDataModule(three, image_size=16, val_size=0.25, batch_size=8, cache_dir=tmp_path / "cache")
    net = partial(AirbenchNet, widths=[8, 8, 8])
    module = ClassificationModule(net=net, input_shape=data.input_shape, num_classes=data.num_classes)
    capsys.readouterr()
    print(load_net_weights(module.net, checkpoint))
    line = capsys.readouterr().out.strip()
    assert line.endswith("skipped: 1 of another shape (the new head): head.weight")
    assert f"loaded {len(module.net.state_dict()) - 1} of the net's {len(module.net.state_dict())} tensors" in line
    for name, tensor in module.net.state_dict().items():
        if name == "head.weight":
            assert tensor.shape == (3, 8) and trained["net.head.weight"].shape == (10, 8)
        else:
            assert torch.equal(tensor, trained[f"net.{name}"]), name
    # ... and it trains on (no PatchWhitening: the stem comes from the checkpoint).
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=data)
    assert not torch.equal(module.net.head.weight, torch.zeros(3, 8)) and trainer.current_epoch == 1
    assert torch.equal(module.net.stem[0].weight, trained["net.stem.0.weight"])  # fixed filters kept

    other = partial(AirbenchNet, widths=[16, 16, 16])  # another net: one clear line
    module = ClassificationModule(net=other, input_shape=data.input_shape, num_classes=3)
    with pytest.raises(UserInputError, match="does not fit this config's net outside the head") as error:
        load_net_weights(module.net, checkpoint)
    assert "\n" not in str(error.value)
    # The wider groups' tensors are of another shape (not their BatchNorm step counts, not the stem; the head: skipped)
    ours = module.net.state_dict()
    unmatched = sum(1 for k, v in ours.items() if k != "head.weight" and trained[f"net.{k}"].shape != v.shape)
    assert 0 < unmatched < len(ours)
    assert f"({unmatched} of this net's {len(ours)} tensors have no match in the checkpoint; first: " in str(
        error.value
    )
    with pytest.raises(UserInputError, match="no such file"):
        load_net_weights(module.net, tmp_path / "absent.ckpt")
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(checkpoint.read_bytes()[:-100])
    with pytest.raises(UserInputError):
        load_net_weights(module.net, damaged)


def test_the_head_of_the_project_nets_is_their_last_linear_layer() -> None:
    assert head_name(AirbenchNet((3, 32, 32), 10)) == "head"
    assert head_name(TorchvisionNet((3, 32, 32), 10)) == "model.fc"


def test_a_run_with_a_weight_average_is_started_from_that_average(in_tmp: Path, tmp_path: Path) -> None:
    tree = class_tree(tmp_path / "tree", ["a", "b"], per_class=12)
    run = tiny_run(tree, tmp_path, "--trainer.max_epochs", "3", "--model.init_args.ema_decay", "0.5")
    assert run_cli("fit", *run) == 0
    checkpoint = next((in_tmp / "lightning_logs").rglob("last.ckpt"))
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    fresh = AirbenchNet((3, 16, 16), len(trained["net.head.weight"]), widths=[8, 8, 8])  # 1 output: two classes
    assert "(its weight average, model.ema_decay)" in load_net_weights(fresh, checkpoint)
    weight = "groups.2.conv1.weight"
    assert not torch.equal(trained[f"net.{weight}"], trained[f"ema.module.{weight}"])  # the two differ
    assert all(torch.equal(tensor, trained[f"ema.module.{name}"]) for name, tensor in fresh.state_dict().items())


def test_patch_whitening_keeps_the_stem_of_the_net_a_task_starts_from(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = class_tree(tmp_path / "first", ["a", "b", "c"], per_class=8)
    assert run_cli("fit", *tiny_run(first, tmp_path, "--trainer.max_epochs", "1")) == 0
    start = next((in_tmp / "lightning_logs").rglob("last.ckpt"))
    stem = torch.load(start, weights_only=True)["state_dict"]["net.stem.0.weight"]
    # Other images (another seed, so other patch statistics), PatchWhitening in the config's callbacks.
    second = class_tree(tmp_path / "second", ["x", "y", "z"], per_class=8, seed=1)
    named = ["--trainer.logger.init_args.name", "second", "--model.init_from", str(start)]
    assert run_cli("fit", *tiny_run(second, tmp_path, "--trainer.max_epochs", "1", *named)) == 0
    assert "PatchWhitening: the stem keeps the filters of model.init_from's net" in capsys.readouterr().out
    tuned = next((in_tmp / "lightning_logs" / "second").rglob("last.ckpt"))
    assert torch.equal(torch.load(tuned, weights_only=True)["state_dict"]["net.stem.0.weight"], stem)
