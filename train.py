"""Train, validate, test or predict any task: `python train.py fit --config configs/circles.yaml`.

Also `lr_find` (LR range test), `export` (state_dict, pt2, TorchScript, ONNX),
`compare_schedules` (one run per LR schedule, a table of results), `sweep` (an Optuna
study over config values), `serve` (a checkpoint behind HTTP) and `optimize` (an image
folder as LitData chunks to stream): see README.md.
"""

import signal
import sys

from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.cli import TemplateCLI
from src.cli.args_from_python import args_from_python
from src.cli.optimize_command import main as optimize
from src.cli.process_group import release_process_group
from src.cli.user_errors import no_subcommand, unknown_subcommand, user_message
from src.errors import StoppedBySignal
from src.quiet_logs import drop_lightning_notices
from src.serving.command import main as serve
from src.sweeps.command import sweep
from src.sweeps.schedule_comparison import compare_schedules

# The CLI's own (Lightning's four and TemplateTrainer's) and the commands this file dispatches itself.
SUBCOMMANDS = (*TemplateCLI.subcommands(), "compare_schedules", "sweep", "serve", "optimize")


def main(args: list[str] | None = None) -> None:
    """Run the CLI; mistakes a user can fix end with one line on stderr and exit status 2."""
    given = args if args is not None else sys.argv[1:]
    drop_lightning_notices()
    if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 is printed escaped, not a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    if not given:
        print(f"error: {no_subcommand(SUBCOMMANDS)}", file=sys.stderr)
        sys.exit(2)
    if not given[0].startswith("-") and given[0] not in SUBCOMMANDS:
        print(f"error: {unknown_subcommand(given[0], SUBCOMMANDS)}", file=sys.stderr)
        sys.exit(2)
    try:
        with args_from_python():
            if given[:1] == ["compare_schedules"]:
                compare_schedules(given[1:])
            elif given[:1] == ["sweep"]:
                sweep(given[1:])
            elif given[:1] == ["serve"]:
                serve(given[1:])
            elif given[:1] == ["optimize"]:
                optimize(given[1:])
            else:
                TemplateCLI(args=given)
    except StoppedBySignal as stop:  # a fit's, an evaluation's or a predict's
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)  # 143 for SIGTERM, 130 for Ctrl-C, as shells report them
    except SIGTERMException as stop:  # Lightning's SIGTERM stop would otherwise exit with 0
        report = getattr(stop, "interruption", None)  # what RunCheckpoint saved, if it ran
        print(f"stopped: {report or 'SIGTERM received'}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        subcommand = next((a for a in given if a in SUBCOMMANDS), "fit")
        message = user_message(error, subcommand)
        if message is None:
            raise  # a bug, not a user mistake: keep the traceback
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    finally:
        release_process_group()


if __name__ == "__main__":
    main()
