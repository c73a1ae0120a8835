"""Multi-process (DDP-style) helpers. A single process is the degenerate case: every helper is a no-op.

Processes are launched by ``torchrun`` (or SLURM's ``srun`` with torchrun's environment); we read
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and average gradients ourselves after each phase, which keeps
the loop free of DDP wrappers around G and D (several phases and double-backward regularizers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str) -> ProcessGroup:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return ProcessGroup(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce-average the gradients of ``params`` in one flat buffer."""
    if not is_active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if is_active():
        dist.barrier()


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every process hold rank 0's parameters and buffers."""
    if not is_active():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def gather_objects(obj: object) -> list[object]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` without a process group)."""
    if not is_active():
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every process."""
    if not is_active():
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when ``flag`` is True on any (so all stop at the same minibatch)."""
    if not is_active():
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
