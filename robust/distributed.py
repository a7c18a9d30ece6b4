"""One training run over several processes: data parallel, one process per GPU (or CPU processes).

Launch a training stage with ``torchrun`` instead of ``python``, with the stage's usual
arguments (docs/scale-out.md)::

    torchrun --nproc-per-node 4 -- stages/pretrain.py --base main --params-file params.yaml ...

The stage reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and opens the process group (``process_group``): NCCL when
the run's device is a GPU, each process on ``cuda:<LOCAL_RANK>``; gloo on the CPU. Without
those variables (or with ``WORLD_SIZE=1``) nothing changes. Only rank 0 writes outputs and
resume checkpoints; every rank reads the same checkpoint to resume.

What the trainer does in such a run (``robust.train.train``), the semantics of PyTorch's
DistributedDataParallel (DDP):

- **Sharding**: the epoch's permutation comes from ``(seed, epoch)`` as in one process and is
  cut into the same global batches of ``batch_size``; rank r trains on the r-th of
  ``WORLD_SIZE`` contiguous, near-equal parts of each (``Tensor.tensor_split``). A global
  batch with fewer examples than processes (only a last, partial one can be) is skipped by all.
- **Gradients**: after the backward pass each rank's gradients are weighted by its share of
  the global batch and summed over the ranks (one all-reduce), so for a loss that is a mean
  over examples the step is the one-process step on the whole global batch, up to rounding.
  Parameters start from rank 0's (a broadcast) and stay identical on every rank.
- **Buffers** (BatchNorm running statistics) are broadcast from rank 0 after every step, as
  DDP's ``broadcast_buffers`` does before every forward pass.
- **Extra networks** of a defense (JARN's adaptor and discriminator, AFD's discriminator and
  embedding step, the adversary critic) are built identically on every rank (their
  initialisation is seeded from the run's generator) and their gradients are averaged the same
  way before each of their optimizer steps: the defense calls ``Defense.reduce_gradients``.
  Their buffers stay per process (JARN's discriminator BatchNorm statistics: it runs in
  training mode only, so they are never used; AFD's spectral-norm vectors follow from the
  identical weights); rank 0's are the ones saved.

Why no ``DistributedDataParallel`` wrapper: DDP averages gradients from hooks that fire when
gradients are accumulated into ``.grad`` by ``backward()``; its documentation states that it
does not work with ``torch.autograd.grad``. The defenses take gradients that way: the extra
networks' updates (JARN, critic), AFD's embedding step on the model's own parameters, and the
first pass of every double-backpropagation regulariser. They also call parts of the model
(``embed``, ``head``) directly, bypassing the wrapper's ``forward``, where DDP prepares each
step's reduction. Averaging explicitly after the step's gradients are complete
works for every one of these, at the cost of DDP's overlap of communication with the backward
pass (one all-reduce per step instead of one per bucket while backward runs).

Simplified, and so not equal to one process on the whole global batch:
- batch statistics are per process: BatchNorm in training mode, the discriminator's
  BatchNorm (JARN), JARN's and the critic's running means, SGR's covariance estimate, and
  the batch-coupled reductions (the Jacobian penalty's ``eq4``: a square root of a sum over
  the batch);
- random draws come from the same seeds on every rank (the epoch's ``(seed, epoch)``), so
  the i-th example of each rank's part gets the same dropout mask, noise and random start
  (this is what makes the extra networks' initialisation identical without communication);
- a resumed run restores rank 0's defense state on every rank.
A run is deterministic for a fixed number of processes (CPU, gloo); changing the number of
processes changes the numbers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from robust.device import KEY
from robust.errors import ConfigError

ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
TIMEOUT = timedelta(minutes=30)  # a rank stuck this long in a collective: the run fails instead of hanging


@dataclass(frozen=True)
class Launch:
    """This process's place in a multi-process launch (torchrun's environment)."""

    rank: int
    world_size: int
    local_rank: int


def launch_from_env() -> Launch | None:
    """The launch torchrun describes in the environment; None for a single process."""
    values = {name: os.environ.get(name) for name in ENV}
    if values["WORLD_SIZE"] is None or int(values["WORLD_SIZE"]) <= 1:
        return None
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun")
    return Launch(int(values["RANK"]), int(values["WORLD_SIZE"]), int(values["LOCAL_RANK"]))


def local_device(device: torch.device, key: str = KEY) -> torch.device:
    """The device of this process: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` in a multi-process launch."""
    launch = launch_from_env()
    if launch is None or device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(key, f"{str(device)!r} in a {launch.world_size}-process run: each process takes the "
                               "GPU of its local rank", ["auto", "cuda"])
    if launch.local_rank >= torch.cuda.device_count():
        raise ConfigError(key, f"local rank {launch.local_rank} has no GPU: {torch.cuda.device_count()} visible")
    return torch.device("cuda", launch.local_rank)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Launch | None]:
    """Open the process group of a torchrun launch for the body (NCCL on GPUs, gloo on CPU); close it after.

    A single process (no launch in the environment), or a group opened by the caller, is left as it is.
    """
    launch = launch_from_env()
    if launch is None or dist.is_initialized():
        yield launch
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size, timeout=TIMEOUT)
    try:
        yield launch
    finally:
        dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes the outputs: rank 0, or the only process."""
    return rank_and_size()[0] == 0


class Sync:
    """The collective operations of one training run over the open process group."""

    def __init__(self):
        self.rank, self.size = rank_and_size()
        self.weight = 1.0  # this rank's share of the current global batch
        # NCCL reduces GPU tensors only
        nccl = dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch (part sizes differ by at most one)."""
        return index.tensor_split(self.size)[self.rank]

    def reduce_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """``.grad`` ← Σ_ranks weight·``.grad``; a parameter without a gradient on every rank keeps None.

        A gradient missing on some ranks only counts as zero there, as DDP treats an unused parameter.
        """
        params = [p for p in params if p.requires_grad]
        for group in _by_dtype_and_device(params):
            like = group[0]
            grads = [p.grad.detach() * self.weight if p.grad is not None else torch.zeros_like(p) for p in group]
            present = torch.tensor([p.grad is not None for p in group], dtype=like.dtype, device=like.device)
            flat = _flatten_dense_tensors([*grads, present])
            dist.all_reduce(flat)
            *summed, present = _unflatten_dense_tensors(flat, [*grads, present])
            for param, grad, anywhere in zip(group, summed, present.tolist()):
                param.grad = grad if anywhere > 0 else None

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's."""
        for group in _by_dtype_and_device(list(tensors)):
            flat = _flatten_dense_tensors([t.detach() for t in group])
            dist.broadcast(flat, src=0)
            with torch.no_grad():
                for tensor, value in zip(group, _unflatten_dense_tensors(flat, group)):
                    tensor.copy_(value)

    def broadcast_module(self, module: nn.Module, *, parameters: bool = True) -> None:
        """Rank 0's buffers (and parameters) in every rank's ``module``."""
        self.broadcast([*(module.parameters() if parameters else ()), *module.buffers()])

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (every rank must call it)."""
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum_totals(self, totals: dict[str, float], seen: int) -> tuple[dict[str, float], int]:
        """Per-name sums of ``totals`` and of ``seen`` over the ranks; a name missing on a rank adds 0 there."""
        names: list[list[str]] = [[] for _ in range(self.size)]
        dist.all_gather_object(names, sorted(totals))
        keys = sorted(set().union(*names))
        values = torch.tensor([float(seen)] + [totals.get(k, 0.0) for k in keys], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(values)
        seen_all, *summed = values.tolist()
        return dict(zip(keys, summed)), int(seen_all)


def _by_dtype_and_device(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    return list(groups.values())
