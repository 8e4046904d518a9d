"""What the classification and regression modules share: steps, metrics per stage, optimizers."""

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection, MinMetric

from src.checkpointing.runs import check_checkpoint
from src.epochs import is_last_epoch
from src.errors import TrainingDivergedError, UserInputError
from src.modules.nets.pretrained import head_name, in_head
from src.modules.optimization import SchedulerConfig, build_scheduler, check_resumed_plan, schedule_plan

# Builds a net from (the shape of one input, number of outputs); in a config this is a
# class path such as src.modules.nets.MLP with its other arguments as init_args.
NetFactory = Callable[[tuple[int, ...], int], nn.Module]

STAGES = ("train", "val", "test")


class TaskModule(LightningModule):
    """A plain `nn.Module` net plus its loss, torchmetrics per stage and optimizer/schedule.

    `optimizer` is any optimizer class given by class path (`torch.optim.AdamW`, a third-party
    one) with its arguments; `scheduler` is one of the run-length-aware schedules of
    `src.modules.optimization`. `init_from` (a .ckpt path of any run here) starts the net from
    that checkpoint's net: see `load_net_weights`.

    Subclasses define the loss (`compute_loss`), how outputs become metric inputs
    (`metric_inputs`), the metrics (`make_metrics`) and which validation metric is tracked
    as the run's best (`best_metric`, `best_mode`).
    """

    best_metric: str = "loss"
    best_mode: str = "min"
    # Which way each metric the module logs improves: a monitor named without a mode is watched that way.
    metric_modes: dict[str, str] = {"loss": "min"}

    @classmethod
    def mode_of(cls, metric: str) -> str | None:
        """`min` or `max` for a metric this module logs while it trains (`val/acc`, `train/loss`,
        `val/mse_best`, `val/acc_class_cat`), None for one it does not (`acc`, `test/acc`)."""
        stage, _, name = metric.rpartition("/")
        if stage not in ("train", "val"):
            return None
        name = name.removesuffix("_best")
        return cls.metric_modes.get("acc" if name.startswith("acc_class_") else name)

    def __init__(
        self,
        net: NetFactory,
        input_shape: tuple[int, ...],
        num_outputs: int,
        optimizer: OptimizerCallable,
        scheduler: SchedulerConfig,
        init_from: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        input_shape = tuple(int(n) for n in input_shape)
        self.net_sizes = (input_shape, num_outputs)  # the net's two positional arguments
        try:
            self.net = net(input_shape, num_outputs)
        except (TypeError, ValueError) as error:
            raise UserInputError(f"model.net could not be built: {error}") from error
        self.init_from = init_from  # read by callbacks that would otherwise reset part of the net
        if init_from is not None:
            print(load_net_weights(self.net, Path(init_from)))
        # The compiled net shares the plain net's weights but is kept out of the module tree, so
        # checkpoints, exports and predictions hold the plain net's keys (no `_orig_mod.`).
        self._compiled: tuple[nn.Module, ...] = (torch.compile(self.net),) if compile else ()
        self._step_started = 0.0
        self._step_seconds: list[float] = []
        self.make_optimizer = optimizer  # params -> torch.optim.Optimizer
        self.scheduler_config = self._with_plateau_mode(scheduler)  # a monitor it does not log: refused now
        self._planned_schedule: dict[str, Any] = {}  # the schedule's length as configure_optimizers planned it
        self._epoch_lr = 0.0  # the LR of the last training step whose metrics were recorded
        metrics = self.make_metrics()
        metrics.add_metrics({"loss": MeanMetric()})
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_best = MaxMetric() if self.best_mode == "max" else MinMetric()

    # --- what subclasses define -------------------------------------------------------
    def make_metrics(self) -> MetricCollection:
        raise NotImplementedError

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def evaluation_net(self) -> nn.Module:
        """The plain net that evaluation uses (subclasses may keep a weight average)."""
        return self.net

    # --- steps ------------------------------------------------------------------------
    def training_net(self) -> nn.Module:
        """The net that training runs: compiled when `compile` is on."""
        return self._compiled[0] if self._compiled else self.net

    def as_net_input(self, x: torch.Tensor) -> torch.Tensor:
        """Floating inputs in the module's dtype (float64 under --trainer.precision 64), as Lightning's
        precision plugins make the batches of its steps: figures and other direct calls need it too."""
        return x.to(self.dtype) if x.is_floating_point() and x.dtype != self.dtype else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.as_net_input(x)
        return self.training_net()(x) if self.training else self.evaluation_net()(x)

    # --- what compiling costs and buys: the first steps timed, one line printed ---------
    COMPILE_REPORT_STEPS = 10

    def _wait_for_device(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._compiled and len(self._step_seconds) <= self.COMPILE_REPORT_STEPS:
            self._wait_for_device()
            self._step_started = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._compiled or len(self._step_seconds) > self.COMPILE_REPORT_STEPS:
            return
        self._wait_for_device()  # a GPU runs asynchronously: time the step, not its launch
        self._step_seconds.append(time.perf_counter() - self._step_started)
        if len(self._step_seconds) == self.COMPILE_REPORT_STEPS + 1 and self.trainer.is_global_zero:
            first, rest = self._step_seconds[0], self._step_seconds[1:]
            each = sorted(rest)[len(rest) // 2]
            print(
                f"torch.compile: the first step took {first:.1f} s (compiling the net), the next "
                f"{len(rest)} took {each * 1000:.1f} ms each (median); compare with a run without "
                "--model.compile to see when it pays back"
            )

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        outputs = self(inputs)
        loss = self.compute_loss(outputs, targets)
        if stage != "train" or self._validates_this_epoch():  # train metrics are logged only then
            self._update_metrics(stage, loss, outputs, targets)
            if stage == "train":  # the LR this step trains with: the epoch's is its last step's
                self._epoch_lr = self._learning_rate()
        if stage == "train" and self._logs_this_step():
            self.log_dict(
                {"train/loss_step": loss, "train/lr_step": self._learning_rate()}, on_step=True, on_epoch=False
            )
        return loss, outputs

    def _update_metrics(self, stage: str, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if len(targets) == 0:  # an evaluation batch whose every image was skipped: its loss is NaN
            return
        predictions, truths = self.metric_inputs(outputs.detach(), targets)
        for name, metric in getattr(self, f"{stage}_metrics").items(keep_base=True):
            if name == "loss":
                metric.update(loss.detach(), weight=len(targets))
            else:
                metric.update(predictions, truths)

    def _logs_this_step(self) -> bool:
        """Whether the logger writes this step: `self.log` costs ~1 ms, too much to waste."""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")[0]
        # Under DDP every rank checks the sum of all ranks' losses, so all stop at the same step.
        seen = self.trainer.strategy.reduce(loss.detach().clone(), reduce_op="sum") if self._distributed() else loss
        if not torch.isfinite(seen):  # stop before the optimizer turns the weights into NaN
            raise TrainingDivergedError(
                f"the training loss became {seen.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped before updating the weights and the last good checkpoint is kept. "
                "Lower model.optimizer.lr or clip gradients (--trainer.gradient_clip_val 1.0)"
            )
        return loss

    def _distributed(self) -> bool:
        return self.trainer.world_size > 1

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(inputs)

    # --- epoch ends: compute, log and reset ----------------------------------------------
    def _learning_rate(self) -> float:
        return self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else 0.0

    def _log_epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        metrics = getattr(self, f"{stage}_metrics")
        values = metrics.compute()
        metrics.reset()
        # The epoch's own LR: by its end hooks, an epoch schedule has already stepped to the next one's.
        logged = {**values, "train/lr": self._epoch_lr} if stage == "train" else values
        self.log_dict(logged, prog_bar=stage != "train")
        return values

    def _validates_this_epoch(self) -> bool:
        every = self.trainer.check_val_every_n_epoch or 1
        return (self.current_epoch + 1) % every == 0 or is_last_epoch(self.trainer, self.current_epoch)

    def on_train_epoch_end(self) -> None:
        # Logged on the epochs that validate, so train and val curves share their points and
        # small full-batch tasks do not pay Lightning's logging cost every epoch. A run resumed
        # from a checkpoint saved at an epoch's end replays that end with nothing new to log.
        if self._validates_this_epoch() and self.train_metrics["loss"].update_called:
            self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's numbers are not a result
            self.val_metrics.reset()
            return
        values = self._log_epoch_metrics("val")
        self.val_best.update(values[f"val/{self.best_metric}"])
        self.log(f"val/{self.best_metric}_best", self.val_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # --- optimizer, schedule, hyperparameters -------------------------------------------
    def configure_optimizers(self) -> Any:
        try:  # torch checks values such as a negative lr only here
            optimizer = self.make_optimizer(self.net.parameters())
        except (TypeError, ValueError) as error:
            raise UserInputError(f"model.optimizer could not be built: {error}") from error
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs not in (None, -1) else None
        steps = self.trainer.estimated_stepping_batches  # inf for a run without an end (max_epochs -1)
        scheduler = build_scheduler(
            optimizer,
            self.scheduler_config,
            max_epochs,
            int(steps) if math.isfinite(steps) else None,
            self.trainer.check_val_every_n_epoch,
        )
        if scheduler is None:
            return optimizer
        self._planned_schedule = schedule_plan(scheduler["scheduler"].state_dict())  # before a resume restores it
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _with_plateau_mode(self, config: SchedulerConfig) -> SchedulerConfig:
        """`config` with the plateau schedule's mode, when not given, from the way its monitor improves."""
        if config.name != "plateau" or config.mode is not None:
            return config
        mode = self.mode_of(config.monitor)
        if mode is None:
            logged = ", ".join(f"val/{name}" for name in sorted(self.metric_modes))
            raise UserInputError(
                f"--model.scheduler.monitor {config.monitor} is not a metric this model logs; choose one of: {logged} "
                "(a metric your own code logs needs --model.scheduler.mode max or min: which way it improves)"
            )
        return replace(config, mode=mode)

    # torchmetrics keeps metric states out of state_dict; the running best must survive a resume.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.val_best.update_called:
            checkpoint["val_best"] = float(self.val_best.compute())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # How far the loaded weights had trained (Lightning saves the epoch it was in, from 0): test figures
        # are titled by it, as a test of the best checkpoint after a fit is not of the last epoch's weights.
        self.loaded_epochs = int(checkpoint["epoch"]) + 1 if "epoch" in checkpoint else None
        if "val_best" in checkpoint:
            self.val_best.reset()
            self.val_best.update(torch.tensor(checkpoint["val_best"]))

    def on_train_start(self) -> None:
        # A resumed schedule keeps the length it was planned for (its checkpoint's), whatever this run's is.
        steps = self.trainer.estimated_stepping_batches  # inf for a run without an end (max_time, a signal)
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs not in (None, -1) else None
        for config in self.trainer.lr_scheduler_configs if self.trainer.ckpt_path else ():
            check_resumed_plan(
                schedule_plan(config.scheduler.state_dict()),
                self._planned_schedule,
                self.scheduler_config,
                max_epochs,
                int(steps) if math.isfinite(steps) else None,
            )

    # What TensorBoard's HPARAMS tab shows of this run: the CLI gives the run's settings (model,
    # data, a few Trainer options); without it, the module's own hyperparameters.
    settings_to_compare: dict[str, Any] | None = None

    def on_fit_start(self) -> None:
        # Register the final metrics with the settings so TensorBoard's HPARAMS tab compares runs.
        # Only on a fresh run: values at step 0 in a resumed run would make TensorBoard drop
        # the run's later points as orphaned.
        if self.logger is not None and self.trainer.ckpt_path is None:
            summary = {f"val/{self.best_metric}_best": float("nan"), f"test/{self.best_metric}": float("nan")}
            self.logger.log_hyperparams(self.settings_to_compare or self.hparams, summary)


def load_net_weights(net: nn.Module, path: Path) -> str:
    """Start `net` from the net of checkpoint `path` (a run of this project, verified first) to
    train a new task: every tensor is loaded except the head's when its shape differs (other
    classes: the head starts fresh). Any other difference means another net, a clear error.
    Returns the one line that says what was loaded and what was skipped."""
    where = f"model.init_from {path}"
    if not path.is_file():
        raise UserInputError(f"{where}: no such file (give the .ckpt file of a run to start from)")
    check_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    # A run with model.ema_decay evaluated (and exported) its averaged weights: start from those.
    prefix = "ema.module." if any(key.startswith("ema.module.") for key in state) else "net."
    theirs = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    ours = net.state_dict()
    head = head_name(net)
    skipped = [k for k, v in theirs.items() if k in ours and ours[k].shape != v.shape and in_head(k, head)]
    loaded = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    unmatched = [k for k in ours if k not in loaded and k not in skipped]  # absent there, or of another shape
    extra = [k for k in theirs if k not in ours]
    if unmatched or extra or not loaded:
        first = sorted([*unmatched, *extra])[0] if unmatched or extra else "no net.* tensors"
        shapes = [tuple(d[first].shape) if first in d else "absent" for d in (theirs, ours)]
        also = f", and it holds {len(extra)} that this net has not" if extra else ""
        raise UserInputError(
            f"{where}: its net does not fit this config's net outside the head ({len(unmatched)} of this net's "
            f"{len(ours)} tensors have no match in the checkpoint{also}; first: {first}, {shapes[0]} in the "
            f"checkpoint, {shapes[1]} here); give model.net the class and init_args the checkpoint was trained "
            "with (only the number of outputs may differ)"
        )
    net.load_state_dict(loaded, strict=False)
    detail = f"{len(skipped)} of another shape (the new head): {', '.join(skipped)}" if skipped else "none"
    averaged = " (its weight average, model.ema_decay)" if prefix == "ema.module." else ""
    return f"{where}: loaded {len(loaded)} of the net's {len(ours)} tensors{averaged}; skipped: {detail}"
