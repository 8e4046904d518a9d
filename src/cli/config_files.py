"""`--config FILE` read as YAML before the parser reads it, so a syntax error names its file, line and column
(jsonargparse reports it `in "<unicode string>"`), and a file that holds no mapping of settings says so."""

from pathlib import Path

import yaml

from src.errors import UserInputError


def config_files(args: list[str]) -> list[str]:
    """The values of `-c FILE`, `--config FILE` and `--config=FILE` in `args`."""
    found = [value for flag, value in zip(args, args[1:], strict=False) if flag in ("-c", "--config")]
    return found + [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]


def check_config_syntax(args: list[str]) -> None:
    """One line naming the file, line and column of the first YAML syntax error in a `--config` file,
    or a file that is empty or not a mapping. A value that is YAML text itself (a checkpoint's
    config) or a missing file is left to the parser."""
    for name in config_files(args):
        try:
            text = Path(name).read_text(encoding="utf-8") if "\n" not in name and Path(name).is_file() else None
        except (OSError, UnicodeDecodeError):
            continue  # the parser reports what it cannot read
        if text is None:
            continue
        try:
            content = yaml.safe_load(text)
        except yaml.MarkedYAMLError as error:
            if error.problem_mark is None:
                continue  # the parser reports it
            found = f"{error.problem} at line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}"
            if error.context and error.context_mark is not None:  # what the parser was reading, and from where
                found = f"{error.context} (line {error.context_mark.line + 1}), {found}"
            raise UserInputError(f"--config {name} is not valid YAML: {found}") from None
        except yaml.YAMLError:
            continue  # no position to name: the parser reports it
        if not isinstance(content, dict):
            what = "empty" if content is None else f"a YAML {type(content).__name__}, not a mapping"
            raise UserInputError(
                f"--config {name} is {what}: a config maps sections to settings (model:, data:, trainer:), as "
                "configs/circles.yaml does"
            )
