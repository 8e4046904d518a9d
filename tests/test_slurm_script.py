"""The SLURM batch script of docs/ddp-slurm.md, checked as far as a machine without SLURM allows."""

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
    """The one SLURM batch script of the docs, from the page that explains it."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [
        (page.relative_to(ROOT).as_posix(), block)
        for page in pages
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.DOTALL)
        if "#SBATCH" in block
    ]
    where = [page for page, _ in found]
    assert where == ["docs/ddp-slurm.md"], f"want one SLURM batch script, in docs/ddp-slurm.md; found it in {where}"
    return found[0][1]


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
