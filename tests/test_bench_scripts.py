"""Every bench script reads its command line before its long run: `--help` answers at once and
a mistyped flag stops it, so neither starts a run of minutes nor rewrites bench/results/."""

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(path.stem for path in BENCH.glob("*.py") if 'if __name__ == "__main__":' in path.read_text())


def results_snapshot() -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in (BENCH / "results").iterdir()}


def test_every_script_is_covered() -> None:
    assert len(SCRIPTS) >= 13 and "cifar10_step_speed" in SCRIPTS and "command_line" not in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_a_bad_flag_stop_before_the_run(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = importlib.import_module(f"bench.{name}")
    before = results_snapshot()

    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage:") and script.__doc__.splitlines()[0][:40] in shown

    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--data_dir", "x", "--no-such-flag"])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err

    assert results_snapshot() == before
