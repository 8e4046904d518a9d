"""Every LR schedule runs under the Trainer and shapes the learning rate as documented."""

import math
from dataclasses import replace
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
    """The LR of every epoch (as it starts) and the LR the run ended with (after the last step)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.final_lr: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.final_lr = trainer.optimizers[0].param_groups[0]["lr"]


class ScriptedMetric(ClassificationModule):
    """Logs `val/scripted` from a fixed list, one value per epoch, so a plateau's input is known."""

    metric_modes = {**ClassificationModule.metric_modes, "scripted": "min"}  # lower is better

    def __init__(self, values: list[float], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.values = values

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/scripted", self.values[self.current_epoch])


def fit_recording_lrs(
    scheduler: SchedulerConfig,
    epochs: int = 6,
    optimizer: str = "sgd",
    scripted: list[float] | None = None,
    **trainer_options: object,
) -> LRRecorder:
    dm = ToyPointsDataModule(n_samples=100, batch_size=35)
    kwargs = {"net": partial(MLP, hidden_sizes=[4]), "optimizer": partial(OPTIMIZERS[optimizer], lr=0.1)}
    if scripted is None:
        module: ClassificationModule = ClassificationModule(**kwargs, scheduler=scheduler)
    else:
        module = ScriptedMetric(scripted, **kwargs, scheduler=scheduler)
    recorder = LRRecorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        accelerator="cpu",
        **trainer_options,  # type: ignore[arg-type]
    )
    trainer.fit(module, datamodule=dm)
    return recorder


def lrs_under(scheduler: SchedulerConfig, epochs: int = 6, optimizer: str = "sgd") -> list[float]:
    return fit_recording_lrs(scheduler, epochs, optimizer).lrs


def test_constant() -> None:
    assert lrs_under(SchedulerConfig(name="none")) == pytest.approx([0.1] * 6)


def test_step() -> None:
    assert lrs_under(SchedulerConfig(name="step", step_size=2, gamma=0.5)) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    )


def test_exponential_with_a_final_lr_derives_gamma_from_the_epochs() -> None:
    run = fit_recording_lrs(SchedulerConfig(name="exponential", final_lr=0.1 * 0.5**6), epochs=6)
    assert run.lrs == pytest.approx([0.1 * 0.5**k for k in range(6)])
    assert run.final_lr == pytest.approx(0.1 * 0.5**6)  # the run ends at final_lr


def test_cosine_reaches_final_lr_with_warmup_first() -> None:
    run = fit_recording_lrs(SchedulerConfig(name="cosine", warmup_epochs=2, final_lr=0.01), epochs=6)
    warmup = [0.1 / 3, 0.2 / 3]  # linear from lr / (warmup_epochs + 1)
    cosine = [0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]  # 4 epochs left
    assert run.lrs == pytest.approx(warmup + cosine)
    assert run.final_lr == pytest.approx(0.01)  # annealed to final_lr by the end of the last epoch


def test_cosine_without_final_lr_anneals_to_zero() -> None:
    assert fit_recording_lrs(SchedulerConfig(name="cosine"), epochs=4).final_lr == pytest.approx(0.0, abs=1e-12)


def test_onecycle_steps_every_batch() -> None:
    lrs = lrs_under(SchedulerConfig(name="onecycle", pct_start=0.3), epochs=6)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) > 0.08 and lrs[-1] < lrs[2]


def onecycle_lrs_and_momenta(steps: int, **options: object) -> tuple[list[float], list[float]]:
    """The LR and momentum that each of `steps` SGD steps (momentum 0.85) runs with under one-cycle."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.85)
    scheduler = build_scheduler(optimizer, SchedulerConfig(name="onecycle", **options), None, steps)
    assert scheduler is not None
    lrs, momenta = [], []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler["scheduler"].step()
    return lrs, momenta


def test_onecycle_can_anneal_linearly_to_its_final_lr() -> None:
    # 20 steps, the peak at the fifth (torch puts it at pct_start * steps - 1): from 0.1 / 5 up
    # to 0.1, then down to 0.1 / 5 / 4 at the last step; a linear fall lowers the LR by the same
    # amount every step.
    options = {"pct_start": 0.25, "div_factor": 5.0, "final_div_factor": 4.0}
    lrs, _ = onecycle_lrs_and_momenta(20, anneal_strategy="linear", **options)
    assert lrs[0] == pytest.approx(0.02) and lrs[4] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.005)
    falls = [later - earlier for earlier, later in zip(lrs[4:], lrs[5:], strict=False)]
    assert falls == pytest.approx([(0.005 - 0.1) / 15] * 15)
    cosine, _ = onecycle_lrs_and_momenta(20, **options)
    assert cosine[-1] == pytest.approx(0.005) and cosine[8] > lrs[8] + 0.005  # a cosine stays higher longer


def test_onecycle_keeps_the_optimizers_momentum_when_told_not_to_cycle_it() -> None:
    _, cycled = onecycle_lrs_and_momenta(20)
    assert cycled[0] == pytest.approx(0.95) and min(cycled) == pytest.approx(0.85)  # torch's default
    _, kept = onecycle_lrs_and_momenta(20, cycle_momentum=False)
    assert kept == pytest.approx([0.85] * 20)


def test_plateau_reduces_by_factor_after_patience_epochs_without_improvement_of_its_monitor() -> None:
    # The monitor improves twice (1.0, then 0.9), then never again: with patience 2 the third
    # epoch without improvement (epoch 4) halves the LR, and so does the next third (epoch 7).
    scripted = [1.0, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9]
    run = fit_recording_lrs(
        SchedulerConfig(name="plateau", monitor="val/scripted", patience=2, factor=0.5), epochs=8, scripted=scripted
    )
    assert run.lrs == pytest.approx([0.1] * 5 + [0.05] * 3)
    assert run.final_lr == pytest.approx(0.025)


def test_plateau_in_max_mode_waits_while_its_monitor_rises() -> None:
    scripted = [0.1, 0.2, 0.3, 0.4, 0.4, 0.3]  # rising: no reduction; then two epochs without a new high
    run = fit_recording_lrs(
        SchedulerConfig(name="plateau", monitor="val/scripted", mode="max", patience=1, factor=0.1),
        epochs=6,
        scripted=scripted,
        optimizer="adam",
    )
    assert run.lrs == pytest.approx([0.1] * 6) and run.final_lr == pytest.approx(0.01)


class ScriptedScore(ScriptedMetric):
    metric_modes = {**ClassificationModule.metric_modes, "scripted": "max"}  # higher is better, as val/acc


def test_plateau_without_a_mode_takes_the_way_its_monitor_improves() -> None:
    """`--model.scheduler.monitor val/acc` alone must not cut the LR while accuracy rises."""
    rising = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    config = SchedulerConfig(name="plateau", monitor="val/scripted", patience=1, factor=0.1)
    dm = ToyPointsDataModule(n_samples=100, batch_size=35)
    module = ScriptedScore(rising, net=partial(MLP, hidden_sizes=[4]), optimizer=partial(torch.optim.SGD, lr=0.1),
                           scheduler=config)  # fmt: skip
    recorder = LRRecorder()
    trainer = L.Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[recorder], accelerator="cpu")  # fmt: skip
    trainer.fit(module, datamodule=dm)
    assert recorder.lrs == pytest.approx([0.1] * 6) and recorder.final_lr == pytest.approx(0.1)
    classifier = ClassificationModule(net=partial(MLP, hidden_sizes=[4]), optimizer=partial(torch.optim.SGD, lr=0.1),
                                      scheduler=replace(config, monitor="val/acc"))  # fmt: skip
    assert classifier._with_plateau_mode(classifier.scheduler_config).mode == "max"


def test_plateau_steps_only_on_the_epochs_that_validate() -> None:
    # Validation every 2nd epoch (epochs 1, 3, 5, 7, 9): the monitor reads 1.0, 0.9, 0.95,
    # 0.9, 0.9 there. With patience 1 the second validation in a row without a new low (epoch 7)
    # halves the LR; the epochs between, with no fresh metric, neither stop the run nor count.
    skipped = 5.0  # never logged: those epochs do not validate
    scripted = [skipped, 1.0, skipped, 0.9, skipped, 0.95, skipped, 0.9, skipped, 0.9]
    run = fit_recording_lrs(
        SchedulerConfig(name="plateau", monitor="val/scripted", patience=1, factor=0.5),
        epochs=10,
        scripted=scripted,
        check_val_every_n_epoch=2,
    )
    assert run.lrs == pytest.approx([0.1] * 8 + [0.05] * 2)
    assert run.final_lr == pytest.approx(0.05)


def test_a_run_without_an_end_trains_under_an_epoch_schedule() -> None:
    # max_epochs -1 with a time limit: the Trainer cannot count the steps (inf); an epoch
    # schedule does not need them.
    run = fit_recording_lrs(SchedulerConfig(name="step", step_size=1, gamma=0.5), epochs=-1, max_time={"seconds": 2})
    assert len(run.lrs) >= 2
    assert run.lrs[:2] == pytest.approx([0.1, 0.05])


def test_impossible_combinations_are_user_errors() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(UserInputError, match="its own warm-up"):
        build_scheduler(optimizer, SchedulerConfig(name="onecycle", warmup_epochs=1), 10, 100)
    with pytest.raises(UserInputError, match="must be below trainer.max_epochs"):
        build_scheduler(optimizer, SchedulerConfig(name="cosine", warmup_epochs=10), 10, 100)
    with pytest.raises(UserInputError, match="needs trainer.max_epochs"):
        build_scheduler(optimizer, SchedulerConfig(name="cosine"), None, 100)
    with pytest.raises(UserInputError, match="set trainer.check_val_every_n_epoch"):
        build_scheduler(optimizer, SchedulerConfig(name="plateau"), 10, 100, None)
    with pytest.raises(UserInputError, match="one-cycle schedule needs a run with an end"):
        build_scheduler(optimizer, SchedulerConfig(name="onecycle"), None, None)
