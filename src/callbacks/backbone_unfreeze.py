"""Train the head first, then the whole net: Lightning's BaseFinetuning, for any net here."""

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from src.errors import UserInputError
from src.modules.nets.pretrained import head_name, in_head

# The keys of a param group that hold a learning rate (OneCycleLR keeps three of its own).
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


class UnfreezeBackbone(BaseFinetuning):
    """Freezes every parameter of `model.net` but its head until epoch `unfreeze_at_epoch`,
    then trains them too, at `lr_factor` times the head's learning rate.

        trainer:
          callbacks:
            - class_path: src.callbacks.UnfreezeBackbone
              init_args: {unfreeze_at_epoch: 2, lr_factor: 0.1}

    The head is the net's `head_name` (TorchvisionNet) or its last Linear layer. Parameters
    that the net itself keeps fixed (AirbenchNet's whitened stem) stay fixed. While frozen, the
    backbone's BatchNorm layers normalise with batch statistics and leave their running
    statistics alone (Lightning's `freeze`), unless `train_bn` keeps them training.

    When the backbone unfreezes it leaves the optimizer's first param group for a new one
    whose learning rates are the first group's times `lr_factor`; the LR schedule goes on
    driving both groups. BaseFinetuning records the groups in the checkpoint, so a run
    resumed after the unfreeze (`--ckpt_path last`) rebuilds them before the optimizer state
    is loaded. One device only: DDP fixes which parameters get gradients when it wraps the
    model, so a backbone unfrozen later would not be synchronised across processes.
    """

    def __init__(self, unfreeze_at_epoch: int = 1, lr_factor: float = 0.1, train_bn: bool = False) -> None:
        super().__init__()
        if unfreeze_at_epoch < 0 or lr_factor <= 0:
            raise UserInputError("UnfreezeBackbone needs unfreeze_at_epoch >= 0 and lr_factor > 0")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.lr_factor = lr_factor
        self.train_bn = train_bn
        self.backbone: list[nn.Parameter] = []
        self.backbone_bn: list[_BatchNorm] = []
        self._epoch_set: int | None = None  # the epoch whose freezing or unfreezing is in place

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_set = trainer.current_epoch
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch: set it up before its first step.
        if self._epoch_set != trainer.current_epoch:
            self.on_train_epoch_start(trainer, pl_module)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Freeze for a fit only: validate, test and predict train nothing, and the test after a fit
        that ended before `unfreeze_at_epoch` finds the backbone still frozen."""
        if stage == "fit":
            super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        if pl_module.trainer.world_size > 1:
            raise UserInputError(
                "UnfreezeBackbone works on one device only (DDP would not synchronise a backbone unfrozen after "
                "it wraps the model): train on one device, or use model.net.init_args.freeze_backbone instead"
            )
        net = pl_module.net
        if getattr(net, "freeze_backbone", False):
            raise UserInputError(
                "model.net.init_args.freeze_backbone true keeps the backbone frozen for the whole run, which the "
                "UnfreezeBackbone callback would undo: use one or the other"
            )
        head = head_name(net)
        bn = [m for name, m in net.named_modules() if isinstance(m, _BatchNorm) and not in_head(name, head)]
        self.backbone_bn = [] if self.train_bn else bn
        trained_bn = {id(p) for m in bn for p in m.parameters()} if self.train_bn else set()
        self.backbone = [
            p
            for name, p in net.named_parameters()
            if p.requires_grad and not in_head(name, head) and id(p) not in trained_bn
        ]
        if not self.backbone:
            raise UserInputError(f"UnfreezeBackbone found no trainable parameters outside the head ({head})")
        for parameter in self.backbone:
            parameter.requires_grad_(False)
        for module in self.backbone_bn:
            module.track_running_stats = False

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        frozen = {id(p) for p in self.backbone}
        groups = optimizer.param_groups
        if epoch < self.unfreeze_at_epoch:
            # The module's optimizer holds every parameter; take the frozen ones out, as
            # BaseFinetuning expects, so they can come back as their own group.
            groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in frozen]
            return
        for parameter in self.backbone:
            parameter.requires_grad_(True)
        for module in self.backbone_bn:
            module.track_running_stats = True
        # Resumed after the unfreeze, BaseFinetuning restored the backbone's own group; at a fresh
        # unfreeze (even at epoch 0) the backbone is still in, or was taken out of, the first.
        held = {id(p) for group in groups[1:] for p in group["params"]}
        if frozen <= held:
            self._fit_schedules(pl_module.trainer, optimizer, None)
            return
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in frozen]
        new_group: dict[str, Any] = {k: v for k, v in groups[0].items() if k != "params"}
        new_group.update({k: v * self.lr_factor for k, v in groups[0].items() if k in LR_KEYS})
        optimizer.add_param_group({**new_group, "params": list(self.backbone)})
        self._fit_schedules(pl_module.trainer, optimizer, self.lr_factor)

    @staticmethod
    def _fit_schedules(trainer: Trainer, optimizer: Optimizer, factor: float | None) -> None:
        """Give the optimizer's schedulers an entry for the new group, so they drive it too."""
        count = len(optimizer.param_groups)

        def fit(scheduler: Any) -> None:
            for inner in getattr(scheduler, "_schedulers", []):  # SequentialLR, ChainedScheduler
                fit(inner)
            for name in ("base_lrs", "_last_lr", "min_lrs"):
                values = getattr(scheduler, name, None)
                if isinstance(values, list) and 0 < len(values) < count:
                    scale = 1.0 if factor is None or name == "min_lrs" else factor
                    values.extend([values[0] * scale] * (count - len(values)))
            lambdas = getattr(scheduler, "lr_lambdas", None)  # not in a scheduler's state: refit on resume too
            if isinstance(lambdas, list) and 0 < len(lambdas) < count:
                lambdas.extend([lambdas[0]] * (count - len(lambdas)))

        for config in trainer.lr_scheduler_configs:
            if getattr(config.scheduler, "optimizer", None) is optimizer:
                fit(config.scheduler)
