"""Initialising a net's first layer from the training images before a fresh run starts."""

from lightning.pytorch import Callback, LightningModule, Trainer


class PatchWhitening(Callback):
    """Calls `net.init_whitening(images)` with `count` training images at the start of a fresh fit.

    Needs a net with `init_whitening` (AirbenchNet) and a data module with
    `sample_images` (CIFAR10DataModule). A resumed run keeps its checkpointed filters, frozen.
    """

    def __init__(self, count: int = 5000) -> None:
        self.count = count

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        net = getattr(pl_module, "net", None)
        if trainer.ckpt_path is not None:  # resumed: the checkpoint holds the filters; keep them fixed
            if hasattr(net, "freeze_stem"):
                net.freeze_stem()
            return
        datamodule = trainer.datamodule
        if not hasattr(net, "init_whitening") or not hasattr(datamodule, "sample_images"):
            raise TypeError("PatchWhitening needs a net with init_whitening and a data module with sample_images")
        net.init_whitening(datamodule.sample_images(self.count))
        ema = getattr(pl_module, "ema", None)
        if ema is not None:  # the weight average starts from the same first layer
            ema.module.load_state_dict(net.state_dict())
