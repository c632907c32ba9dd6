"""Which process of a ``torchrun`` launch this is; shared by AP-MAE training and extraction.

torchrun starts ``--nproc_per_node`` copies of the command with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; a plain ``apmae`` process has none of them and runs alone (rank 0 of 1).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_and_world(backend: str = "gloo") -> tuple[int, int]:
    """``(rank, world)``; joins the process group when started by torchrun.

    gloo unless the caller's collectives carry GPU tensors (AP-MAE training on GPUs: NCCL):
    extraction only meets at a barrier, and NCCL cannot carry the CPU tensors of CPU training.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend)
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def rank_device(device: str | torch.device) -> torch.device:
    """The device this process loads its model onto: under torchrun a bare ``cuda`` becomes
    ``cuda:LOCAL_RANK``, so the ranks of one node each take their own GPU instead of all
    loading onto the first."""
    device = torch.device(device)
    local = os.environ.get("LOCAL_RANK")
    if device.type == "cuda" and device.index is None and local is not None:
        return torch.device("cuda", int(local))
    return device
