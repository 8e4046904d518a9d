"""Lookahead: the slow copy, the pull of the trained weights toward it, and its place in checkpoints."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from src.callbacks import Lookahead
from src.errors import UserInputError
from tests.conftest import run_cli
from tests.test_cifar10 import FIGURES_EVERY_EPOCH, image_tree, tiny_cifar_run


def fake_run(total: int) -> tuple[SimpleNamespace, SimpleNamespace]:
    torch.manual_seed(0)
    module = SimpleNamespace(net=nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))
    return SimpleNamespace(global_step=0, estimated_stepping_batches=total), module


def train_step(trainer: SimpleNamespace, module: SimpleNamespace, lookahead: Lookahead) -> None:
    """One optimizer step's change to the weights (and BatchNorm statistics), then the callback."""
    with torch.no_grad():
        for value in module.net.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value))
    trainer.global_step += 1
    lookahead.on_train_batch_end(trainer, module)


def test_every_few_steps_the_weights_become_the_slow_average_and_at_the_end_the_average() -> None:
    trainer, module = fake_run(total=10)
    lookahead = Lookahead(every=5, final_decay=0.5, power=1.0)
    lookahead.on_train_start(trainer, module)
    start = {k: v.clone() for k, v in module.net.state_dict().items() if v.is_floating_point()}
    for _ in range(4):
        train_step(trainer, module, lookahead)
    trained = {k: v.clone() for k, v in module.net.state_dict().items() if v.is_floating_point()}
    assert all(not torch.equal(trained[k], start[k]) for k in start)  # steps 1-4: untouched
    train_step(trainer, module, lookahead)  # step 5 of 10: decay 0.5 * 5 / 10
    after_five = {k: v.clone() for k, v in module.net.state_dict().items() if v.is_floating_point()}
    for name, value in after_five.items():
        # the slow copy started at the initial weights and moved 75% of the way to the trained ones
        assert torch.equal(value, lookahead.slow[name])
        assert not torch.equal(value, start[name])
    for _ in range(5):
        train_step(trainer, module, lookahead)
    for name, value in module.net.state_dict().items():
        if value.is_floating_point():  # step 10, the last: the net is the slow copy of step 5
            assert torch.equal(value, after_five[name]), name


def test_the_pull_follows_the_schedule() -> None:
    trainer, module = fake_run(total=10)
    lookahead = Lookahead(every=5, final_decay=0.5, power=1.0)
    lookahead.on_train_start(trainer, module)
    slow = {k: v.clone() for k, v in lookahead.slow.items()}
    for _ in range(4):
        train_step(trainer, module, lookahead)
    with torch.no_grad():
        module.net[0].weight.add_(1.0)
    fast = module.net[0].weight.clone()
    trainer.global_step += 1
    lookahead.on_train_batch_end(trainer, module)
    expected = 0.25 * slow["0.weight"] + 0.75 * fast
    assert torch.allclose(module.net[0].weight, expected, atol=1e-6)


def test_its_state_resumes_and_bad_settings_are_refused() -> None:
    trainer, module = fake_run(total=10)
    lookahead = Lookahead()
    lookahead.on_train_start(trainer, module)
    for _ in range(5):
        train_step(trainer, module, lookahead)
    restored = Lookahead()
    restored.load_state_dict(lookahead.state_dict())
    restored.on_train_start(trainer, module)
    assert restored._last_step == 5
    assert all(torch.equal(restored.slow[k], v) for k, v in lookahead.slow.items())
    for bad in ({"every": 0}, {"final_decay": 1.0}, {"power": -1.0}):
        with pytest.raises(UserInputError, match="Lookahead needs"):
            Lookahead(**bad)


def test_a_real_run_resumed_mid_epoch_ends_as_a_straight_one_on_the_average(in_tmp: Path, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=10, with_test=False)
    args = [*tiny_cifar_run(tree, tmp_path), "--trainer.max_epochs", "3"]  # 5 steps an epoch
    lookahead = ', {"class_path": "src.callbacks.Lookahead", "init_args": {"every": 2}}'
    with_lookahead = FIGURES_EVERY_EPOCH[:-1] + lookahead + "]"
    stop = (
        with_lookahead[:-1] + ', {"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 7, "signum": 15}}]'
    )
    assert run_cli("fit", *args, "--trainer.callbacks", stop) == 143  # after a pull at step 6, mid-epoch 2
    assert run_cli("fit", *args, "--trainer.callbacks", with_lookahead, "--ckpt_path", "last") == 0
    assert run_cli("fit", *args, "--trainer.callbacks", with_lookahead) == 0
    runs = in_tmp / "lightning_logs" / "cifar10_cpu"
    resumed = torch.load(runs / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    straight = torch.load(runs / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    slow = next(state for name, state in straight["callbacks"].items() if "Lookahead" in name)["slow"]
    for name, value in slow.items():  # the last step made the net the slow average
        assert torch.equal(straight["state_dict"][f"net.{name}"], value), name
    assert run_cli("fit", *args, "--trainer.callbacks", FIGURES_EVERY_EPOCH) == 0
    without = torch.load(runs / "version_2" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(without["net.head.weight"], straight["state_dict"]["net.head.weight"])  # it acted
