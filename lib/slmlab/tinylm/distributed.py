"""Data-parallel training on torch's own engine: ``torchrun`` starts the processes, DDP averages the gradients
(gloo on CPU, NCCL on CUDA); this module only reads the launcher's environment and starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from slmlab.backends import torch_device


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a (possibly one-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def setup(device: str | None = None) -> Distributed:
    """Join the process group when started by ``torchrun`` (gloo on CPU, NCCL on CUDA); one process otherwise."""
    import torch

    if not launched_by_torchrun():
        return Distributed(device=device or torch_device())
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Distributed(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=f"cuda:{local_rank}" if cuda else "cpu",
    )


def teardown(context: Distributed) -> None:
    if context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(context: Distributed) -> None:
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


def mean_over_ranks(value: float, context: Distributed) -> float:
    """The mean of a scalar over the processes (the value itself in a one-process run)."""
    return sum_over_ranks([value], context)[0] / context.world_size


def sum_over_ranks(values: Sequence[float], context: Distributed) -> list[float]:
    """Element-wise sums of a few numbers over the processes."""
    if not context.enabled:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def torchrun_command(
    nproc: int, module_args: Sequence[str], nnodes: int = 1, node_rank: int = 0, master: str | None = None
) -> list[str]:
    """The ``torchrun`` command line that runs ``python -m slmlab <module_args>`` on ``nproc`` processes per node.

    One node uses ``--standalone``; several nodes name the rendezvous host (``master`` = ``host:port``) and this
    node's rank, as the README's multi-node line shows.
    """
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1:
        command.append("--standalone")
    else:
        if not master:
            raise ValueError("a multi-node run needs master=HOST:PORT (the node every other node reaches)")
        command += [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={master.rsplit(':', 1)[0]}",
            f"--master-port={master.rsplit(':', 1)[1]}",
        ]
    return command + ["-m", "slmlab", *module_args]


def launch(nproc: int, module_args: Sequence[str], **options) -> int:
    """Run :func:`torchrun_command` and wait; returns its exit status (one thread per process on CPU)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(torchrun_command(nproc, module_args, **options), env=env)
