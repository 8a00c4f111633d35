"""What the **source** model computes the same way in every forgetting run of a world — its trajectories for
the other people, its samples' dlib descriptors — kept once in `$LEGATO_CACHE/lfw-faces/source/`.

A key is the sha256 of the world's weights file and of everything the result depends on (labels, noise
seed, sampler settings), so an entry never outlives the model it came from. A damaged entry is recomputed.
`LEGATO_NO_CACHE=1` (or `cache=False`) turns the cache off.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

_SHA_BY_FILE: dict[tuple[str, float, int], str] = {}


def weights_sha256(folder: str | Path) -> str:
    path = Path(folder) / "diffusion_pytorch_model.safetensors"
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_mtime, stat.st_size)
    if memo not in _SHA_BY_FILE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_BY_FILE[memo] = h.hexdigest()
    return _SHA_BY_FILE[memo]


def cached(world, what: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]],
           cache: bool = True) -> dict[str, torch.Tensor]:
    """`compute()` (a dict of tensors), or the entry kept from an earlier call with the same world and key."""
    from legato.tensor_cache import cached as cached_tensors

    return cached_tensors("lfw-faces/source", what, {"weights": weights_sha256(world.folder), **key}, compute,
                          cache)
