"""Where a run's curves, figures and config go: TensorBoard (the default), CSV, MLflow, W&B.

Pick one with a config part (`--config configs/loggers/mlflow.yaml`) or a class path
(`--trainer.logger src.loggers.MLflow`); a list logs to several at once. Every one keeps the
run in `<save_dir>/<name>/version_N/` (see src/checkpointing/runs.py).
"""

from src.loggers.figures import log_figures, logs_images
from src.loggers.run_loggers import (
    CSV,
    MLflow,
    Wandb,
    check_tracking_uri,
    describe_run,
    store_file,
)

__all__ = [
    "CSV",
    "MLflow",
    "Wandb",
    "check_tracking_uri",
    "describe_run",
    "log_figures",
    "logs_images",
    "store_file",
]
