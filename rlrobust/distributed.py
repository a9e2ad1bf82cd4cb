"""Several GPUs through ``torch.distributed`` as launched by ``torchrun`` (one process per GPU), and the device
settings of a run (which device, bf16 autocast, channels-last).

``torchrun --nproc_per_node=8 scripts/train_classifier.py ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the
process group then uses NCCL on CUDA and Gloo on CPU (the latter for tests). Without those variables the run is a
single process and nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when enabled (no gradient scaler is needed for bf16), else nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def start_runtime(device: str = "auto", amp: str = "auto", channels_last: str = "auto") -> Runtime:
    """Join the ``torchrun`` process group if launched by it, and pick the device and precision settings."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is available")
        chosen = torch.device("cuda", local_rank if world_size > 1 else (chosen.index or 0))
        torch.cuda.set_device(chosen)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    on_cuda = chosen.type == "cuda"
    amp_dtype = torch.bfloat16 if amp == "bf16" or (amp == "auto" and on_cuda) else None
    use_channels_last = channels_last == "on" or (channels_last == "auto" and on_cuda)
    return Runtime(chosen, rank, world_size, amp_dtype, use_channels_last)


def stop_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor over the processes (identity for a single process)."""
    if runtime.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(runtime: Runtime) -> Iterator[None]:
    """Let rank 0 run the block before the others (e.g. to create folders)."""
    if not runtime.is_main:
        barrier(runtime)
    yield
    if runtime.is_main:
        barrier(runtime)


def shard(items: list, runtime: Runtime) -> list:
    """This process's share of ``items``: every ``world_size``-th one from index ``rank`` (all for one process).

    >>> shard(list(range(5)), Runtime(torch.device("cpu"), rank=1, world_size=2))
    [1, 3]
    """
    return items[runtime.rank :: runtime.world_size]


def gather_objects(value: object, runtime: Runtime) -> list:
    """Every process's ``value`` (picklable, sent between our own processes only), in rank order; ``[value]``
    for a single process."""
    if not runtime.distributed:
        return [value]
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, value)
    return gathered
