"""What a run prints: the template's lines and Lightning's useful ones, not adverts or misleading notices."""

from pathlib import Path

from conftest import QUIET, config, run_train_py


def test_lr_find_prints_no_advert_and_no_weights_only_notice(tmp_path: Path) -> None:
    done = run_train_py("lr_find", "--config", config("circles"), *QUIET, "--num_training", "20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "Suggested learning rate" in printed or "no suggestion" in printed
    for noise in ("litlogger", "weights_only", "Restoring states", "to estimate number of stepping batches"):
        assert noise not in printed, noise


def test_fit_prints_no_advert(tmp_path: Path) -> None:
    done = run_train_py("fit", "--config", config("blobs"), *QUIET, "--trainer.max_epochs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "TensorBoard logs:" in printed
    assert "litlogger" not in printed and "to estimate number of stepping batches" not in printed
