"""Initialising a net's first layer from the training images before a fresh run starts."""

from lightning.pytorch import Callback, LightningModule, Trainer

from src.errors import UserInputError


class PatchWhitening(Callback):
    """Calls `net.init_whitening(images)` with `count` training images at the start of a fresh fit.

    Needs a net with `init_whitening` (AirbenchNet, whose stem filters are fixed from
    construction) and a data module with `sample_images` (CIFAR10DataModule). A resumed run
    keeps the filters its checkpoint holds. Under DDP every rank takes rank 0's net (DDP
    copied it from rank 0 only when it wrapped the model, before this hook), so all ranks
    train the same model.
    """

    def __init__(self, count: int = 5000) -> None:
        self.count = count

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is not None:  # resumed: the checkpoint holds the filters
            return
        net = getattr(pl_module, "net", None)
        datamodule = trainer.datamodule
        if not hasattr(net, "init_whitening") or not hasattr(datamodule, "sample_images"):
            raise UserInputError(
                "the PatchWhitening callback needs a net with init_whitening (AirbenchNet) and an image data "
                "module: remove it from trainer.callbacks for this net or data"
            )
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
