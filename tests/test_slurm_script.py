"""The SLURM batch script in README.md, checked as far as a machine without SLURM allows."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, ROOT, config, run_train_py

# What SLURM sets for one task of one node; SLURMEnvironment reads these.
ONE_TASK = {
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "cifar10",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}


def batch_script() -> str:
    readme = (ROOT / "README.md").read_text()
    scripts = [block for block in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL) if "#SBATCH" in block]
    assert len(scripts) == 1, "README.md should hold exactly one SLURM batch script"
    return scripts[0]


def test_the_batch_script_parses_and_requeues_with_resume(tmp_path: Path) -> None:
    script = batch_script()
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=SIGUSR1@" in script
    assert "--ckpt_path last" in script and "SLURM_RESTART_COUNT" in script
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    (tmp_path / "train.sbatch").write_text(script)
    checked = subprocess.run(["bash", "-n", str(tmp_path / "train.sbatch")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_scripts_plugin_flags_train_and_resume_under_slurm_variables(tmp_path: Path) -> None:
    plugins = re.search(r"--trainer\.plugins '(.*?)'", batch_script(), re.DOTALL)
    assert plugins is not None
    flags = ["--config", config("circles"), "--trainer.max_epochs", "25", "--trainer.plugins", plugins.group(1)]
    first = run_train_py("fit", *flags, *QUIET, cwd=tmp_path, env=ONE_TASK)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_train_py(
        "fit", *flags, "--trainer.max_epochs", "50", "--ckpt_path", "last", *QUIET, cwd=tmp_path, env=ONE_TASK
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    last = tmp_path / "lightning_logs" / "circles" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 50  # the same run folder, continued
