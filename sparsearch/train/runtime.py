"""How a run executes, apart from what it trains: the device, the arithmetic, the memory layout, the
data-loading workers, and the processes of a data-parallel run under ``torchrun``.

A :class:`Runtime` never changes what a configuration is or how it is trained (that is
:class:`~sparsearch.train.settings.TrainSettings`); it changes where and how fast.

Data parallelism: ``torchrun --nproc_per_node=N`` starts N processes; :meth:`Distributed.from_env`
reads the variables it sets and joins the process group (gloo on CPU, NCCL on CUDA). Every process
builds the same initial weights (same seed), draws the same global batch order, and takes its share
of each global batch. After the backward pass(es) of a step the gradients are summed across the
processes in flat buckets (``torch.distributed.all_reduce``), each process having weighted its loss
by its share of the global batch; batch statistics span the global batch
(:mod:`sparsearch.layers.batch_sync`). So N processes take the step one process takes on the whole
global batch, up to float rounding. (Not ``DistributedDataParallel``'s wrapper: a supernet step runs
several backward passes, and its parameter set may change between steps; one reduction per step after
all of them is what it needs.) Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparsearch.choices import PRECISIONS
from sparsearch.errors import ConfigError, SparsearchError

__all__ = ["Distributed", "Runtime", "StepScale"]

BUCKET_ELEMENTS = 1 << 22  # gradients all-reduced 4M elements (16 MB of float32) at a time


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed | None:
        """The job ``torchrun`` started this process in (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); None
        outside one."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return None
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError:
            raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} is not within WORLD_SIZE={world}")
        return cls(rank, world, local)

    def device(self, name: str) -> torch.device:
        """The device of this process: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` where CUDA is present."""
        if name in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu" if name == "auto" else name)

    def join(self, device: torch.device) -> None:
        """Join the process group (gloo on CPU, NCCL on CUDA) unless already joined."""
        import torch.distributed as dist

        if dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as err:
            raise SparsearchError(f"cannot join the torchrun job (rank {self.rank} of {self.world}): {err}") from None

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes."""

    device: torch.device
    precision: str = "32"  # "32", or autocast to "bf16" / "fp16" (with a gradient scaler)
    channels_last: bool = False  # images and convolution weights in NHWC memory layout
    workers: int = 0  # DataLoader worker processes for data read from disk (0: in this process)
    dist: Distributed | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or not 0 <= self.workers <= 256:
            raise ConfigError(f"workers={self.workers!r} must be an integer from 0 to 256")
        if self.precision == "fp16" and self.device.type == "cpu":
            raise ConfigError("precision fp16 needs a CUDA device; on the CPU use bf16")

    @property
    def rank(self) -> int:
        return 0 if self.dist is None else self.dist.rank

    @property
    def world(self) -> int:
        return 1 if self.dist is None else self.dist.world

    @property
    def is_main(self) -> bool:
        """True for the process that writes files (rank 0, or the only one)."""
        return self.rank == 0

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's arithmetic: float32, or autocast to bfloat16 / float16."""
        if self.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """float16 needs its loss scaled against underflow; bfloat16 and float32 do not."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, in the memory layout asked for."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def images(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def global_count(self, n: int) -> int:
        """Examples of this step over all processes."""
        if self.world == 1:
            return n
        import torch.distributed as dist

        total = torch.tensor([n], dtype=torch.long, device=self._comm_device)
        dist.all_reduce(total)
        return int(total.item())

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def reduce_gradients(self, model: nn.Module) -> None:
        """Sum every parameter's gradient across the processes (a no-op in one process).

        A parameter no process touched keeps no gradient, as in one process; one that some did gets
        zeros where it had none, so all processes hold the same gradient."""
        if self.world == 1:
            return
        import torch.distributed as dist

        params = [p for p in model.parameters() if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self._comm_device)
        dist.all_reduce(has)
        live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[nn.Parameter] = []
        size = 0
        for p in [*live, None]:
            if p is not None and (size + p.numel() <= BUCKET_ELEMENTS or not bucket):
                bucket.append(p)
                size += p.numel()
                continue
            if bucket:
                flat = torch.cat([q.grad.reshape(-1) for q in bucket])
                dist.all_reduce(flat)
                offset = 0
                for q in bucket:
                    q.grad.copy_(flat[offset : offset + q.numel()].view_as(q.grad))
                    offset += q.numel()
            bucket, size = ([p], p.numel()) if p is not None else ([], 0)

    def agree(self, flag: bool) -> bool:
        """True when ``flag`` holds in every process (e.g. every process saw a finite loss)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([0 if flag else 1], device=self._comm_device)
        dist.all_reduce(t)
        return int(t.item()) == 0

    def broadcast(self, value: int) -> int:
        """Rank 0's ``value`` in every process of the job (``value`` itself outside one)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.long, device=self._comm_device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def barrier(self) -> None:
        """Wait for every process of the job (a no-op outside one)."""
        if self.dist is None:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()

    @contextlib.contextmanager
    def step_scope(self, model: nn.Module) -> Iterator[None]:
        """A training step: in a ``torchrun`` job, batch statistics over the global batch (a run without
        ``dist`` exchanges nothing, even in a process that has joined a process group for other reasons)."""
        if self.dist is None:
            yield
            return
        from sparsearch.layers.batch_sync import global_batch

        with global_batch(model):
            yield


@dataclass(frozen=True)
class StepScale:
    """How one process weights its terms so that the processes' gradients sum to one process's.

    ``task``: this process's share of the step's examples (the loss is a mean over them); ``balance``:
    1 / processes, since every process computes the same global balance term."""

    task: float = 1.0
    balance: float = 1.0

    @classmethod
    def of(cls, runtime: Runtime, n: int) -> StepScale:
        if runtime.world == 1:
            return cls()
        return cls(n / runtime.global_count(n), 1.0 / runtime.world)
