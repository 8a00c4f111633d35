"""`load(spec)` — one entry point for every generator backend.

Backends other than the NVlabs pickles and the toy register themselves: a package declares
`name = "module:loader"` in its `legato.generators` entry points (SynthFaces does, in pyproject.toml), or
code calls `register_backend(name, loader)`. The registry imports no backend, so no import runs from the
generator layer up into a world built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import torch

from legato.errors import InputError
from legato.generators.base import Generator


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `mps` as a torch device; one clear error when it is not available here."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but no CUDA device is available to this PyTorch "
                             f"({torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} requested but MPS is not available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return dev


ENTRY_POINT_GROUP = "legato.generators"
_BACKENDS: dict[str, Callable[..., Generator]] = {}


def register_backend(name: str, loader: Callable[..., Generator]) -> None:
    """Make `load(name)` call `loader(device=device)`."""
    _BACKENDS[name] = loader


def backend_names() -> list[str]:
    """The registered backends' names (entry points and `register_backend` calls)."""
    return sorted({*_BACKENDS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def _backend(name: str) -> Callable[..., Generator] | None:
    if name not in _BACKENDS:
        for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
            _BACKENDS[name] = ep.load()
    return _BACKENDS.get(name)


def load(spec: str = "synthfaces", device: str | torch.device = "cpu", eg3d_options=None) -> Generator:
    """Return a `Generator` for `spec`: `"synthfaces"` (the embedded default) or a network pickle path.

    `eg3d_options` (`legato.generators.eg3d.EG3DOptions`) sets EG3D's rendering resolution, ray chunking
    and gradient checkpointing; it is refused for other generators.
    """
    device = resolve_device(device)
    if eg3d_options is not None and Path(spec).suffix != ".pkl":
        raise InputError(f"rendering options apply to EG3D network pickles only, not to {spec!r}")
    if spec == "toy":  # a tiny random generator for tests and quick tries
        from legato.generators.toy import ToyGenerator

        return ToyGenerator().to(device)
    backend = _backend(spec)
    if backend is not None:
        return backend(device=device)
    path = Path(spec)
    if path.suffix == ".pkl":
        if not path.is_file():
            raise InputError(f"generator file {path} does not exist")
        from legato.generators.nvlabs import load_network_pickle

        return load_network_pickle(path, device=device, eg3d_options=eg3d_options)
    names = ", ".join(repr(n) for n in [*backend_names(), "toy"])
    hint = "" if backend_names() else " (no backend is registered: install the package, e.g. pip install -e .)"
    raise InputError(f"unknown generator {spec!r}; use {names} or a path to an NVlabs .pkl network{hint}")
