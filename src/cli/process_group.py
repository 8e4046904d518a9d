"""Shut down torch.distributed before Python exits.

Lightning destroys the process group at exit only for NCCL. With gloo (CPU DDP) the
group outlives `main()`, and its worker threads can abort the process during interpreter
shutdown ("terminate called without an active exception", exit -6) after a run that
finished fine. Destroying it while the interpreter is still alive avoids that.
"""

import torch.distributed as dist


def release_process_group() -> None:
    """Destroy the default process group if this process started one; otherwise do nothing."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
