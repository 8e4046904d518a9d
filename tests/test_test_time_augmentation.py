"""Test-time augmentation: the views it averages, and a checkpoint's predictor evaluating as the model did."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.errors import UserInputError
from src.modules import ClassificationModule
from src.modules.test_time_augmentation import augmented_logits
from src.tools.predictor import load_predictor
from tests.conftest import run_cli
from tests.test_checkpoint_alone import checkpoint_of
from tests.test_cifar10 import image_tree, tiny_cifar_run


class RecordingNet(nn.Module):
    """Logits from a fixed linear map of the pixels; remembers every view it was given."""

    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.map = nn.Linear(pixels, 3)
        self.views: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.views.append(x.clone())
        return self.map(x.flatten(1))


def test_the_views_are_the_mirror_and_one_pixel_shifts_weighted_as_airbench() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 6, 6)
    net = RecordingNet(3 * 6 * 6)
    assert torch.equal(augmented_logits(net, images, flip=False, translate=0), net.map(images.flatten(1)))
    net.views.clear()
    logits = augmented_logits(net, images, flip=True, translate=1)
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[:, :, :6, :6], padded[:, :, 2:, 2:]
    expected_views = [images, images.flip(3), up_left, up_left.flip(3), down_right, down_right.flip(3)]
    assert len(net.views) == 6
    for seen, expected in zip(net.views, expected_views, strict=True):
        assert torch.equal(seen, expected)
    with torch.no_grad():
        each = [net.map(view.flatten(1)) for view in expected_views]
    expected = 0.5 * (each[0] + each[1]) / 2 + 0.5 * ((each[2] + each[3]) / 2 + (each[4] + each[5]) / 2) / 2
    assert torch.allclose(logits, expected, atol=1e-6)
    # a shift moves the pixels: the shifted views are not the image itself
    assert not torch.equal(up_left, images) and torch.equal(up_left[:, :, 1:, 1:], images[:, :, :-1, :-1])


def test_a_checkpoint_predicts_with_the_views_it_was_evaluated_with(in_tmp: Path, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=3, with_test=False)
    args = [*tiny_cifar_run(tree, tmp_path), "--data.val_size", "10", "--trainer.max_epochs", "1"]
    assert run_cli("fit", *args, "--model.tta_translate", "1") == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "cifar10_cpu" / "version_0")
    model = ClassificationModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert model.tta_flip and model.tta_translate == 1
    predictor = load_predictor(ckpt)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    inputs = predictor.inputs.model_inputs(images)
    with torch.no_grad():
        from_model = torch.softmax(model(inputs), dim=1)
        one_view = torch.softmax(model.evaluation_net()(inputs), dim=1)
    assert torch.allclose(predictor.run(images), from_model, atol=1e-5)
    assert not torch.allclose(from_model, one_view, atol=1e-5)  # the views do count


def test_validate_measures_the_views_given_on_the_command_line(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = image_tree(tmp_path / "tree", per_class=3, with_test=False)
    args = [*tiny_cifar_run(tree, tmp_path), "--data.val_size", "10", "--trainer.max_epochs", "1"]
    assert run_cli("fit", *args) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "cifar10_cpu" / "version_0")
    capsys.readouterr()
    losses = []
    # The checkpoint holds the config's views (mirror and 1-pixel shifts); each command turns one of them off.
    # (Shifts of 1 and of 2 pixels can give the same loss to 7 digits on this nearly untrained net.)
    for views in (["--model.tta_flip", "false"], ["--model.tta_translate", "0"], []):
        assert run_cli("validate", *args, "--ckpt_path", str(ckpt), *views) == 0
        out = capsys.readouterr().out
        assert "Using the checkpoint's values" not in out  # how to evaluate is this run's choice
        losses.append(float(re.search(r"val/loss\s*│\s*([0-9.]+)", out)[1]))  # Lightning's table: all digits
    no_mirror, no_shifts, as_trained = losses
    assert len({no_mirror, no_shifts, as_trained}) == 3  # three evaluations, three losses


def test_predict_uses_the_views_given_too(in_tmp: Path, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=3, with_test=False)
    args = [*tiny_cifar_run(tree, tmp_path), "--data.val_size", "10", "--trainer.max_epochs", "1"]
    assert run_cli("fit", *args) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "cifar10_cpu" / "version_0")
    predicted = []
    for name, views in (("mirror.csv", []), ("plain.csv", ["--model.tta_flip", "false"])):
        command = ["predict", *args, "--ckpt_path", str(ckpt), "--input", str(tree / "train" / "cat"), "--output", name]
        assert run_cli(*command, *views) == 0
        predicted.append((in_tmp / name).read_text())
    assert predicted[0] != predicted[1]


def test_shifts_as_large_as_the_images_are_refused_in_one_line() -> None:
    with pytest.raises(UserInputError, match="tta_translate must be smaller than the images"):
        ClassificationModule(input_shape=(3, 4, 4), num_classes=10, tta_translate=4)
