"""A net's first layer whitened from the training images before a fresh run starts, and its
bias frozen after a few epochs."""

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import SingleDeviceStrategy

from src.errors import UserInputError


def _whitens(pl_module: LightningModule) -> bool:
    """Whether the module's net has a whitened stem (AirbenchNet); other nets are left alone."""
    return hasattr(getattr(pl_module, "net", None), "init_whitening")


class PatchWhitening(Callback):
    """Calls `net.init_whitening(images)` with `count` training images at the start of a fresh fit,
    and freezes the stem's bias after `bias_epochs` epochs (airbench's warm-up of that bias).

    Acts on a net with `init_whitening` (AirbenchNet, whose stem filters are fixed from
    construction; any other net is left alone, with a printed line) and needs a data module
    with `sample_images` (the image-folder ones). A resumed run
    keeps the filters its checkpoint holds, and a net started from `model.init_from` those of
    the net it starts from. Under DDP every rank takes rank 0's net (DDP
    copied it from rank 0 only when it wrapped the model, before this hook), so all ranks
    train the same model.

    Freezing the bias ends the backward pass at the first conv group, which skips the
    gradient of that group's widest input: about 10% faster training steps on a CPU for
    AirbenchNet 32/96/192. Under DDP (even with one device) and other multi-process
    strategies the bias keeps training (DDP fixes at the start which parameters get
    gradients), and a printed line says so.

    Args:
        count: training images the whitening filters are computed from.
        bias_epochs: train the stem's bias for this many epochs, then freeze it (airbench: 3);
            None: train it throughout.
    """

    def __init__(self, count: int = 5000, bias_epochs: int | None = None) -> None:
        if count < 1 or (bias_epochs is not None and bias_epochs < 0):
            raise UserInputError(f"PatchWhitening needs count >= 1 and bias_epochs >= 0, got {count}, {bias_epochs}")
        self.count = count
        self.bias_epochs = bias_epochs
        self._said_kept = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch: freeze here too.
        self._freeze_when_due(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._freeze_when_due(trainer, pl_module)

    def _freeze_when_due(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Freezes the stem's bias once `bias_epochs` epochs have been trained (one process only)."""
        if self.bias_epochs is None or trainer.current_epoch < self.bias_epochs or not _whitens(pl_module):
            return
        if not isinstance(trainer.strategy, SingleDeviceStrategy):  # DDP wraps the model even on one device
            if not self._said_kept and trainer.is_global_zero:
                strategy = type(trainer.strategy).__name__
                print(
                    f"PatchWhitening: the stem's bias keeps training under {strategy} (DDP fixes at its start "
                    "which parameters get gradients): bias_epochs applies to single-device runs",
                    flush=True,
                )
            self._said_kept = True
            return
        pl_module.net.freeze_whitening_bias()  # type: ignore[union-attr]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is not None:  # resumed: the checkpoint holds the filters
            return
        net = getattr(pl_module, "net", None)
        datamodule = trainer.datamodule
        if not _whitens(pl_module):  # another net on a config made for AirbenchNet (--model.net TinyVGG)
            if trainer.is_global_zero:
                print(f"PatchWhitening: {type(net).__name__} has no whitened stem; nothing to set up", flush=True)
            return
        if not hasattr(datamodule, "sample_images"):
            raise UserInputError(
                "the PatchWhitening callback needs an image data module (one with sample_images) to whiten "
                "from: remove it from trainer.callbacks for this data"
            )
        if getattr(pl_module, "init_from", None) is not None:
            if trainer.is_global_zero:
                print("PatchWhitening: the stem keeps the filters of model.init_from's net, trained with them")
            return
        # Every rank computes the filters (from the same images, so a bad net raises on every rank,
        # not on one while the others wait), then takes rank 0's values bit for bit.
        net.init_whitening(datamodule.sample_images(self.count))
        if trainer.world_size > 1:
            # Sent as CPU tensors, so that no rank unpickles them onto another rank's GPU.
            state = {name: value.cpu() for name, value in net.state_dict().items()}
            state = trainer.strategy.broadcast(state, src=0)
            net.load_state_dict(state)
        ema = getattr(pl_module, "ema", None)
        if ema is not None:  # the weight average starts from the same first layer
            ema.module.load_state_dict(net.state_dict())
