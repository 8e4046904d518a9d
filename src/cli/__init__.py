"""The command line: LightningCLI and Trainer subclasses, subcommands, user-error messages."""

from src.cli.template_cli import TemplateCLI

__all__ = ["TemplateCLI"]
