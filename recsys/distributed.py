"""Multi-process training under PyTorch's launcher (``torchrun``); a no-op in a plain single process.

``torchrun --nproc_per_node N -m recsys train ...`` starts N copies of the CLI with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address in their environment. :func:`session` joins them into one process
group (NCCL when CUDA is available, each rank on GPU ``LOCAL_RANK``; gloo on the CPU) and leaves it at the
end. What is then distributed, and how:

* the gradient steps of BPR-MF and LightGCN (:mod:`recsys.models.bpr`) and of the fusion model's gate: every
  rank draws the same mini-batch (same seed, same generators) and computes the loss on its slice
  (``batch[rank::world]``), weighted by its share of the batch; :func:`sum_gradients` adds the gradients of
  all ranks (one all-reduce of one flat buffer per step), which is the gradient of the whole batch, so
  every rank takes the same optimiser step and ends with the same parameters. Decisions (early stopping,
  a stop request) are made once and shared (:func:`broadcast_object`, the flags in :func:`sum_gradients`).
* only rank 0 writes: the run folder, its lock, metrics, model, progress and the feature cache
  (:func:`primary_first`). The other ranks follow the same steps in a scratch folder outside the workspace,
  removed at their end.

Not distributed: closed-form models (EASE, ItemKNN, MostPop), the fusion model's experts, the evaluations
and the feature extraction (rank 0 extracts into the cache while the others wait, then read it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch

T = TypeVar("T")

__all__ = [
    "PrimaryFailed",
    "launched",
    "session",
    "rank",
    "world_size",
    "is_primary",
    "describe",
    "barrier",
    "broadcast_object",
    "broadcast_tensors",
    "sum_gradients",
    "shard",
    "primary_first",
    "on_primary",
]

# rank 0 may extract features for many minutes while the others wait at a barrier
TIMEOUT = timedelta(seconds=float(os.environ.get("RECSYS_DIST_TIMEOUT_S", "7200")))


class PrimaryFailed(RuntimeError):
    """Raised on the other ranks when a step that rank 0 runs for all of them failed there."""


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets the same variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _active() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else from torchrun's ``RANK``, else 0."""
    if _active():
        return int(torch.distributed.get_rank())
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    """Number of processes in the group; 1 outside torchrun."""
    if _active():
        return int(torch.distributed.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1


def is_primary() -> bool:
    """Rank 0: the one process that writes."""
    return rank() == 0


@contextmanager
def session() -> Iterator[None]:
    """Join torchrun's process group for the duration (nothing to do when not launched by torchrun, or when
    the group already exists); leave it (``destroy_process_group``) at the end, also on an error."""
    if not launched() or _active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    dist = torch.distributed
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" is then this rank's GPU
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def describe() -> dict[str, Any]:
    """``{"world_size", "backend"}`` of the process group, for the run's status (``backend`` None outside one)."""
    return {"world_size": world_size(), "backend": str(torch.distributed.get_backend()) if _active() else None}


def _device() -> torch.device:
    if _active() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if world_size() > 1 and _active():
        torch.distributed.barrier()


def broadcast_object(value: T, source: int = 0) -> T:
    """``value`` of rank ``source`` on every rank (any picklable object); ``value`` itself in one process."""
    if world_size() <= 1 or not _active():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=source, device=_device())
    return box[0]


def broadcast_tensors(tensors: Sequence[torch.Tensor], source: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``source``'s values (initial parameters, as DDP does)."""
    if world_size() <= 1 or not _active():
        return
    with torch.no_grad():
        for tensor in tensors:
            torch.distributed.broadcast(tensor.data, src=source)


def sum_gradients(params: Sequence[torch.Tensor], extras: Sequence[float] = ()) -> list[float]:
    """Replace each parameter's ``.grad`` by the sum over the ranks (a missing one counts as zeros) and
    return the sums of ``extras`` (a loss to report, a stop flag): one all-reduce of one flat buffer.

    The caller weights each rank's loss by its share of the mini-batch, so the sum is the gradient of the
    whole batch (exactly what one process computes, up to rounding), also on an uneven last batch.
    """
    if world_size() <= 1 or not _active():
        return [float(x) for x in extras]
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = grads[0].device if grads else _device()
    dtype = grads[0].dtype if grads else torch.float32
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor(list(extras), dtype=dtype, device=device)])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
    return [float(x) for x in flat[offset:].tolist()]


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's slice of a mini-batch every rank drew alike: ``batch[rank::world]``."""
    world = world_size()
    return batch if world <= 1 else batch[rank() :: world]


def primary_first(function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0, then (after a barrier) on the others: for a step that fills a cache that the
    others then only read (feature extraction). A failure on rank 0 is sent to the others, which raise it."""
    if world_size() <= 1 or not _active():
        return function()
    if is_primary():
        try:
            result = function()
        except BaseException as exc:
            broadcast_object(f"{type(exc).__name__}: {exc}")
            raise
        broadcast_object(None)
        return result
    failure = broadcast_object(None)
    if failure is not None:
        raise PrimaryFailed(f"rank 0 failed: {failure}")
    return function()


def every_rank(function: Callable[[], float], what: str) -> list[float]:
    """``function()`` run on every rank at once (each does its own share of a step, e.g. its slice of the
    items to encode); returns every rank's number, by rank. A failure (or a stop) on any rank is raised on
    every rank: there as itself, on the others as :class:`PrimaryFailed` naming the rank and ``what``, so no
    rank waits for one that has given up."""
    world = world_size()
    if world <= 1 or not _active():
        return [float(function())]
    mine = rank()
    failure: BaseException | None = None
    value = 0.0
    try:
        value = float(function())
    except BaseException as exc:  # a stop too: the others must hear of it before anyone leaves
        failure = exc
    slots = [0.0] * (2 * world)  # [values by rank, failed flags by rank], summed over the ranks
    slots[mine], slots[world + mine] = value, float(failure is not None)
    summed = sum_gradients([], slots)
    if failure is not None:
        raise failure
    failed = [r for r in range(world) if summed[world + r] > 0]
    if failed:
        raise PrimaryFailed(f"rank {failed[0]} failed during {what}")
    return summed[:world]


def on_primary(function: Callable[[], T]) -> T:
    """``function()`` run on rank 0 only, its result sent to every rank (picklable); a failure on rank 0 is
    raised there and as :class:`PrimaryFailed` naming it on the others."""
    if world_size() <= 1 or not _active():
        return function()
    if is_primary():
        try:
            outcome: tuple[bool, Any] = (True, function())
        except BaseException as exc:
            broadcast_object((False, f"{type(exc).__name__}: {exc}"))
            raise
        broadcast_object(outcome)
        return outcome[1]
    received: tuple[bool, Any] = broadcast_object((False, None))
    ok, value = received
    if not ok:
        raise PrimaryFailed(f"rank 0 failed: {value}")
    return value
