"""Fully sharded data parallel: PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`), `--fsdp`.

With N processes each rank keeps 1/N of every parameter, of its gradient and of AdamW's two
moments (dim-0 rows of each tensor, as a DTensor). Around each unit's forward and backward the
unit's parameters are all-gathered and freed again; gradients are reduce-scattered (averaged over
ranks, as DDP's all-reduce), so the trainer's loss scaling (distributed.py) is unchanged.

Units (`shard`): every block of every nn.ModuleList of the model (decoder blocks; the
encoder-decoder's encoder and decoder stacks), one by one, then the root, which takes what is left:
the embeddings, the final norm and the output head. Tied embeddings (W_out = E^T) are one
parameter and therefore stay in one unit, the root's. The optimizer is built after `shard`, over the
sharded parameters. On CPU the mesh is a gloo "cpu" mesh (FSDP2 supports it in torch 2.13;
tested), on CUDA an nccl one. Gradient accumulation reduce-scatters every micro-batch (the
sharded gradients add up; no unsharded gradient is kept between micro-batches).

Rank-0-alone work (evaluation, the task's samples) needs whole weights on one process: `gather`
collects them (a collective every rank makes) and rank 0 loads them into an ordinary copy of the
model (`Replica`), which it keeps for the next evaluation. That costs rank 0 one more full copy of
the parameters (not of gradients or optimizer state): train/memory.py counts it.
"""

from __future__ import annotations

import torch
from torch import nn


def shard(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """Apply fully_shard to each block, then to the root (in place); returns the model."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for stack in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
        for block in stack:
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def gather(model: nn.Module) -> dict:
    """Every rank (a collective): the whole state dict on rank 0's CPU, {} on the others."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


class Replica:
    """Rank 0's ordinary copy of a sharded model, refreshed by `get(step)` once per step."""

    def __init__(self, model: nn.Module, main: bool, device: torch.device):
        self.model, self.main, self.device = model, main, device
        self.copy: nn.Module | None = None
        self.step = -1

    def get(self, step: int) -> nn.Module | None:
        """Every rank calls it at the same steps; rank 0 gets the copy, the others None."""
        if step != self.step:
            state = gather(self.model)
            self.step = step
            if self.main:
                if self.copy is None:
                    from ..models import build_model

                    with torch.random.fork_rng(devices=[]):  # initial values: overwritten
                        self.copy = build_model(self.model.config).to(self.device)
                    if getattr(self.model, "tokenizer", None) is not None:
                        self.copy.tokenizer = self.model.tokenizer
                self.copy.load_state_dict(state)
        if self.copy is not None:
            self.copy.train(self.model.training)
        return self.copy if self.main else None
