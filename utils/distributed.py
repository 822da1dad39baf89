"""Process-group helpers for ``torchrun`` (multi-GPU, multi-node) with a single-process fallback.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`init_distributed`
reads them, picks NCCL for CUDA and Gloo for the CPU, and binds each process
to its local GPU.  Without those variables everything is a no-op, so the same
code runs on a laptop.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (CUDA when present).  Under torchrun,
    a bare ``"cuda"`` becomes the process's local GPU."""
    if not name:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"bad --device {name!r}: {err}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name}: use cpu, cuda, cuda:N or mps")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name} asked for Apple's MPS, which is not available here (use --device cpu)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for CUDA, but no CUDA device is available (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        elif device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(device)
    return device


def _env_int(key: str, default: int) -> int:
    value = os.environ.get(key, str(default))
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {key}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device_name: str | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; return (info, this process's device)."""
    world_size, rank, local_rank = (_env_int(k, d) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"WORLD_SIZE={world_size} and RANK={rank} do not describe a process group")
    info = DistInfo(rank, world_size, local_rank)
    device = resolve_device(device_name, local_rank)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
        log.info("process group: rank %d of %d (%s) on %s", rank, world_size, backend, device)
    return info, device


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not (info.enabled and dist.is_initialized()):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not (info.enabled and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over all ranks.

    DDP keeps parameters identical, but each rank's BatchNorm sees only its own
    batches; averaging at the end of an epoch makes every rank - and the
    checkpoint rank 0 writes - hold the same statistics.
    """
    if not (info.enabled and dist.is_initialized()):
        return
    with torch.no_grad():
        for buf in model.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                buf.div_(info.world_size)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
