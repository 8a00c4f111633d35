"""Tensors a run computes from a frozen model the same way every time, kept once under `$LEGATO_CACHE`
(default `~/.cache/legato`): the lfw-faces source's trajectories and descriptors, the keyed gate's maps.

An entry's name is the sha256 of its key (which must name the model's weights, e.g. by their fingerprint,
and every setting the result depends on), so it never outlives the model it came from. A damaged entry is
recomputed; `LEGATO_NO_CACHE=1` (or `cache=False`) turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from legato.files import atomic_write_bytes


def cache_dir() -> Path:
    """`$LEGATO_CACHE`, else `~/.cache/legato`: the root of everything the project caches."""
    root = os.environ.get("LEGATO_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "legato"


def enabled(cache: bool = True) -> bool:
    return cache and os.environ.get("LEGATO_NO_CACHE", "") not in ("1", "true", "yes")


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' dtypes, shapes and bytes (for keys that depend on tensor values)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cached(folder: str, name: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]],
           cache: bool = True) -> dict[str, torch.Tensor]:
    """`compute()` (a dict of tensors), or the entry `cache_dir()/folder/name-DIGEST.safetensors` kept from
    an earlier call with the same key (JSON-able values)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    if not enabled(cache):
        return compute()
    digest = hashlib.sha256(json.dumps({"what": name, **key}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / folder / f"{name}-{digest[:32]}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except (OSError, ValueError, RuntimeError, SafetensorError):
            pass  # a damaged entry is recomputed
    out = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save({k: v.detach().to("cpu").contiguous() for k, v in out.items()}))
    return out
