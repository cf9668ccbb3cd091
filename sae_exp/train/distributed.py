"""Data-parallel training of one SAE under `torchrun`, on plain `torch.distributed`.

    torchrun --nproc_per_node=2 -m sae_exp.run trainer.ddp=true data=... [overrides]

Every rank builds the same SAE from the same seed and reads the same shuffled batch (the batch
order is a pure function of the seed); rank r trains on the r-th of `world_size` contiguous,
disjoint slices of each batch. After `backward` each rank scales its gradients by
`rows_on_rank / rows_in_batch` and one all-reduce sums them: the result is the gradient of the
whole batch's mean loss, the same on every rank, so the optimizer steps keep the replicas equal
(this is what DistributedDataParallel does; done by hand here because the trainer's AuxK and the
sparse decoder call the SAE outside `forward`). Dead-latent counters count the whole batch.
Only rank 0 writes files or talks to W&B; `gloo` on CPU, `nccl` on CUDA.

`trainer.ddp`: null = on when launched with WORLD_SIZE > 1 (torchrun sets it), true = require
torchrun, false = refuse to run under torchrun with several ranks (every rank would write).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sae_exp.errors import ConfigError

log = logging.getLogger(__name__)


def env_world_size() -> int | None:
    """WORLD_SIZE set by torchrun, or None when not launched by a distributed launcher."""
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value else None


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


@dataclass
class DistContext:
    """This process's place in the process group, and the collectives the trainer needs."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per rank (LOCAL_RANK); CPU stays CPU."""
        if device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, x: Tensor) -> tuple[Tensor, float]:
        """This rank's rows of a batch [B, d] and the weight of its gradient (rows / B).

        A batch with fewer rows than ranks is given whole to every rank with weight 1/world:
        the summed gradient is still the batch gradient."""
        n = x.shape[0]
        if n < self.world_size:
            return x, 1.0 / self.world_size
        part = x.tensor_split(self.world_size)[self.rank]
        return part, part.shape[0] / n

    def all_reduce_grads(self, params: list[nn.Parameter], weight: float) -> None:
        """grad <- sum over ranks of weight_r * grad_r, in one flat all-reduce."""
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        flat = torch.cat([g.reshape(-1) for g in grads]).mul_(weight)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on one (a stop request reaches one rank first)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self._collective_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def union(self, mask: Tensor) -> Tensor:
        """Element-wise OR of a boolean mask over ranks (latents that fired on any rank)."""
        t = mask.to(self._collective_device, torch.uint8)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.to(mask.device).bool()

    def mean_metrics(self, metrics: dict) -> dict:
        """Average the float metrics of a step over ranks (for the log only)."""
        keys = [k for k, v in metrics.items() if isinstance(v, float)]
        t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64,
                         device=self._collective_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return {**metrics, **{k: float(v) / self.world_size for k, v in zip(keys, t.tolist(),
                                                                             strict=True)}}

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def average_buffers(self, module: nn.Module) -> None:
        """Mean of floating-point buffers over ranks (batchtopk's running threshold)."""
        with torch.no_grad():
            for b in module.buffers():
                if b.is_floating_point():
                    dist.all_reduce(b.data, op=dist.ReduceOp.SUM)
                    b.data.div_(self.world_size)

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    @property
    def _collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else \
            torch.device("cpu")


def check_sparsity(kind: str, world_size: int | None) -> None:
    """Refuse batch-top-k under DDP: each rank would keep the top k*B of its own slice and learn
    its own threshold, so two ranks would not train what one process trains."""
    if kind == "batchtopk" and world_size is not None and world_size > 1:
        raise ConfigError(
            f"sparsity.kind='batchtopk' is invalid under DDP (WORLD_SIZE={world_size}): each rank "
            "would select its own top k*B; use sparsity=topk, or train batch-top-k in one process."
        )


def setup(ddp: bool | None, device: torch.device) -> DistContext | None:
    """Join the process group torchrun describes; None for an ordinary one-process run.

    Raises ConfigError for `trainer.ddp=true` without torchrun and for `trainer.ddp=false`
    under torchrun with several ranks."""
    world = env_world_size()
    if ddp is True and world is None:
        raise ConfigError(
            "trainer.ddp=True is invalid without a distributed launcher (WORLD_SIZE unset): "
            "use torchrun --nproc_per_node=N -m sae_exp.run trainer.ddp=true, or trainer.ddp=null."
        )
    if ddp is False and world is not None and world > 1:
        raise ConfigError(
            f"trainer.ddp=False is invalid under torchrun with WORLD_SIZE={world}: every rank "
            "would train and write on its own; use trainer.ddp=true (or null)."
        )
    if world is None or world <= 1:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0") or 0))
    log.info("DDP: rank %d of %d (%s)", ctx.rank, ctx.world_size, backend)
    return ctx
