"""TensorBoard's HPARAMS tab: the settings a person compares runs by, none of Lightning's bookkeeping."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import QUIET, config, run_cli


def hparams_columns(run: Path) -> dict[str, object]:
    """The hparams of the run's session, as TensorBoard's HPARAMS tab reads them."""
    events = EventAccumulator(str(run))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for key, value in data.session_start_info.hparams.items()}  # fmt: skip


def test_the_hparams_tab_shows_model_data_and_trainer_settings_only(in_tmp: Path) -> None:
    flags = ["--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.05", "--trainer.max_epochs", "3"]
    assert run_cli("fit", "--config", config("circles"), *flags, *QUIET) == 0
    columns = hparams_columns(in_tmp / "lightning_logs" / "circles" / "version_0")
    assert columns["model.optimizer"] == "SGD" and columns["model.optimizer.lr"] == 0.05
    assert columns["data.dataset"] == "circles" and columns["trainer.max_epochs"] == 3 and columns["seed"] == 42
    assert columns["model.scheduler.name"] == "none" and "model.scheduler.pct_start" not in columns
    assert columns["model.net"] == "MLP" and "model.net.hidden_sizes" in columns
    noise = [
        key for key in columns if "_class_path" in key or "_instantiator" in key or key.endswith(("fused", "foreach"))
    ]
    assert not noise, noise
