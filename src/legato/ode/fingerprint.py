"""A sha256 fingerprint of a model's own weights, to tie an adapter bundle to the base it was trained on."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def fingerprint(model: nn.Module) -> str:
    """sha256 over the model's `state_dict` (names, dtypes, shapes and bytes, in name order).

    Attached adapters are not part of the model's `state_dict`, so attaching does not change it.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()
