"""Saving and restoring the random number generators with every checkpoint."""

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback


class RngState(Callback):
    """Puts the torch (CPU and this process's CUDA device), NumPy and Python RNG states into checkpoints.

    Lightning's checkpoints hold no RNG state, so dropout masks and random augmentation
    after a resume would differ from an uninterrupted run. States are stored as tensors
    and plain Python values, so checkpoints still load with `torch.load(weights_only=True)`.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
        version, python_state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            # This process's device only: rank 0 writes the checkpoint, and every DDP rank restores
            # it onto its own device, whose generator drew as many numbers as rank 0's.
            "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else [],
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gauss": float(cached_gauss),
            },
            "python": {"version": int(version), "state": list(python_state), "gauss": gauss},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict["cuda"]
        if cuda and torch.cuda.is_available():
            if len(cuda) == 1:
                torch.cuda.set_rng_state(cuda[0])  # onto this process's device
            elif len(cuda) == torch.cuda.device_count():  # a checkpoint that kept every device's state
                torch.cuda.set_rng_state_all(cuda)
        numpy_state = state_dict["numpy"]
        np.random.set_state(
            (
                numpy_state["kind"],
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["position"],
                numpy_state["has_gauss"],
                numpy_state["cached_gauss"],
            )
        )
        python_state = state_dict["python"]
        random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
