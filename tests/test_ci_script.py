"""`.ci/run` runs the fast suite, then the slow tests only when enough of CI's 90 minutes is
left for them: on a slow machine it says it skipped them rather than be cut off mid-run."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_ci(tmp_path: Path, need_s: int) -> tuple[str, list[str]]:
    """Run .ci/run with `make` and `apt-get` replaced by stubs that record their arguments."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    for tool in ("make", "apt-get"):
        stub = stubs / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "SLOW_TESTS_NEED_S": str(need_s)}
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, [line for line in calls.read_text().splitlines() if line.startswith("make")]


@pytest.mark.parametrize(("need_s", "slow_runs"), [(60, True), (90 * 60 + 1, False)])
def test_slow_tests_run_only_with_time_left(tmp_path: Path, need_s: int, slow_runs: bool) -> None:
    shown, makes = run_ci(tmp_path, need_s)
    if slow_runs:
        assert makes == ["make test", "make test-slow"]
        assert "skipped" not in shown
    else:
        assert makes == ["make test"]
        assert "the slow tests were skipped" in shown and "make test-slow" in shown
