"""`salun`: SalUn's weight saliency on top of GUIDE's objective (Fan et al., ICLR 2024).

Before the first step, the local (forgetting) loss is back-propagated once at the source weights; the
synthesis weights whose gradient magnitude lies in the top `salun_keep` fraction (50%: one threshold over
all of them, as the paper's hard threshold at the median) form the mask. Training then follows GUIDE's
objective with every gradient multiplied by the mask, so the other weights never move (Adam leaves a
parameter whose gradient is always zero untouched). The mask is checkpointed with the run; the result is
saved as fine-tuned weights like GUIDE's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from legato.unlearning.config import UnlearnConfig
from legato.unlearning.methods.base import Method, Trainable
from legato.unlearning.methods.finetune import finetuned_copy, holds, load


def saliency_masks(grads: dict[str, torch.Tensor], keep: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the `keep` fraction of entries with the largest |gradient|, one global threshold."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"the saliency fraction must be in (0, 1], got {keep}")
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = max(1, round(keep * flat.numel()))
    threshold = torch.topk(flat, k, sorted=True).values[-1]  # the k-th largest magnitude
    return {name: g.abs() >= threshold for name, g in grads.items()}


def _build(generator: nn.Module, config: UnlearnConfig, adapter_name: str) -> Trainable:
    trainable = finetuned_copy(generator, "salun")
    named = trainable._named
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in named.items()}
    trainable.buffers.update(masks)
    for name, p in named.items():  # the hook reads the buffer, so a resumed run's loaded mask applies
        p.register_hook(lambda g, m=masks[name]: g * m)

    def prepare(backward_local_loss: Callable[[], None]) -> None:
        for p in named.values():
            p.grad = None
        for m in masks.values():  # the saliency is the plain gradient: no mask while measuring it
            m.fill_(True)
        backward_local_loss()
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in named.items()}
        for n, m in saliency_masks(grads, config.salun_keep).items():
            masks[n].copy_(m)
        for p in named.values():
            p.grad = None

    trainable.prepare = prepare
    return trainable


SALUN = Method("salun", "GUIDE's objective on the synthesis weights whose local-loss gradient is in the top 50% "
               "(SalUn's saliency mask)", None, _build, holds, load)
