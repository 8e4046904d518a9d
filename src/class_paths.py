"""Classes named by their import path, as configs and checkpoints name them (`src.modules.nets.MLP`)."""

import importlib
from typing import Any


def class_from_path(class_path: str) -> Any:
    """The class (or any attribute) `module.path.Name` names, its module imported."""
    module_name, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)
