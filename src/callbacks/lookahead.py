"""Lookahead as airbench94 schedules it: the trained weights pulled back to a slow average every few steps."""

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from src.errors import UserInputError


class Lookahead(Callback):
    """Every `every` optimizer steps, the slow copy of the net moves toward the trained weights,
    and the trained weights are reset to it:

        slow = decay * slow + (1 - decay) * net;   net = slow

    with `decay = final_decay * (step / total_steps) ** power`: no pull at the start, a growing
    one toward the end (airbench94: every 5 steps, 0.95 ** 5, cubic). At the last planned step
    the net becomes the slow copy, so what is validated and saved at the end is the average (a
    run stopped early, by early stopping or a signal, keeps its last trained weights). Floating-point
    parameters and buffers (BatchNorm statistics) alike; the slow copy is saved in checkpoints,
    so a resumed run goes on exactly (with the same length: a resume given another max_epochs
    plans the pull over the new total of steps).

        trainer:
          callbacks:
            - class_path: src.callbacks.Lookahead
    """

    def __init__(self, every: int = 5, final_decay: float = 0.95**5, power: float = 3.0) -> None:
        if every < 1 or not 0 <= final_decay < 1 or power < 0:
            raise UserInputError(
                f"Lookahead needs every >= 1, 0 <= final_decay < 1 and power >= 0; "
                f"got every {every}, final_decay {final_decay}, power {power}"
            )
        self.every = every
        self.final_decay = final_decay
        self.power = power
        self.slow: dict[str, torch.Tensor] | None = None
        self._last_step = -1
        self._total_steps = 0  # the run's optimizer steps, known once training starts

    @staticmethod
    def _tensors(pl_module: LightningModule) -> dict[str, torch.Tensor]:
        """The net's floating-point parameters and buffers, by name."""
        return {name: value for name, value in pl_module.net.state_dict().items() if value.is_floating_point()}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        if total == float("inf"):
            raise UserInputError("Lookahead needs a run of known length: set trainer.max_epochs or trainer.max_steps")
        self._total_steps = int(total)
        tensors = self._tensors(pl_module)
        if self.slow is None:
            self.slow = {name: value.detach().clone() for name, value in tensors.items()}
        else:  # restored from a checkpoint: onto the net's device
            self.slow = {name: self.slow[name].to(value.device) for name, value in tensors.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step, total = trainer.global_step, self._total_steps
        if step == self._last_step or self.slow is None:  # a batch that accumulated without a step
            return
        self._last_step = step
        last = step >= total
        if step % self.every and not last:
            return
        decay = 1.0 if last else self.final_decay * (step / total) ** self.power
        for name, value in self._tensors(pl_module).items():
            slow = self.slow[name]
            slow.lerp_(value, 1 - decay)
            value.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict["slow"]
        self._last_step = state_dict["last_step"]
