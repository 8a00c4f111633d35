"""`load(spec)` — one entry point for every generator backend."""

from __future__ import annotations

from pathlib import Path

import torch

from legato.errors import InputError
from legato.generators.base import Generator


def load(spec: str = "synthfaces", device: str | torch.device = "cpu") -> Generator:
    """Return a `Generator` for `spec`: `"synthfaces"` (the embedded default) or a network pickle path."""
    if spec == "toy":  # a tiny random generator for tests and quick tries
        from legato.generators.toy import ToyGenerator

        return ToyGenerator().to(device)
    if spec == "synthfaces":
        from legato.synthfaces import load_generator

        return load_generator(device=device)
    path = Path(spec)
    if path.suffix == ".pkl":
        if not path.is_file():
            raise InputError(f"generator file {path} does not exist")
        from legato.generators.nvlabs import load_network_pickle

        return load_network_pickle(path, device=device)
    raise InputError(f"unknown generator {spec!r}; use 'synthfaces', 'toy' or a path to an NVlabs .pkl network")
