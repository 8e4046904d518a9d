"""Lightning's rich progress bar, counting epochs as the plain-text lines do: `Epoch 25/100`."""

from lightning.pytorch.callbacks import RichProgressBar

from src.epochs import last_epoch


class EpochProgressBar(RichProgressBar):
    """Lightning's bar shows `Epoch 0/99` for the first of 100 epochs; this one `Epoch 1/100`, as
    PlainTextProgress counts (`epoch 25/100` after the 25th)."""

    def _get_train_description(self, current_epoch: int) -> str:  # Lightning's one place for the label
        description = f"Epoch {current_epoch + 1}"
        if (end := last_epoch(self.trainer)) is not None:
            description += f"/{end}"
        return f"{description:{len(self.validation_description)}}"  # as wide as the validation label: no jumping
