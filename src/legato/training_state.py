"""What every training loop shares: its checkpoint file (resume) and the recipes' learning-rate schedule.

`write_state` / `read_state` are the one writer and reader of a checkpoint in the project (the forgetting
loop, the world recipes, the digits flow): a dict of tensors and plain values, written atomically, read
back with `weights_only=True` (no code from the file runs), a damaged file one clear error.
`save_checkpoint` / `load_checkpoint` are the recipes' layout on top: the `state_dict()` of named
modules/optimisers, the state of named random generators, torch's global RNG, the step and the elapsed
seconds.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import torch

from legato.errors import CheckpointError
from legato.files import atomic_write_bytes


def write_state(path: Path, state: dict) -> None:
    """`state` (tensors, state dicts, numbers, strings) into `path`, atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def read_state(path: Path) -> dict | None:
    """What `write_state` wrote, or None when there is no file; a file that is not one is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # torch warns of odd pickle protocols in a damaged file: it is refused
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated zip, foreign pickle, …: all the same to the user)
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to start "
                              "over") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no training state; delete it to start over")
    return state


def save_checkpoint(path: Path, stateful: dict, generators: dict[str, torch.Generator], step: int,
                    elapsed: float) -> None:
    """`stateful`: name → module or optimiser; `generators`: name → torch.Generator."""
    write_state(path, {**{k: v.state_dict() for k, v in stateful.items()},
                       **{k: g.get_state() for k, g in generators.items()},
                       "torch_rng": torch.get_rng_state(), "step": step, "elapsed": elapsed})


def load_checkpoint(path: Path, stateful: dict, generators: dict[str, torch.Generator]) -> tuple[int, float]:
    """Restore what `save_checkpoint` wrote under the same names; (0, 0.0) when there is no checkpoint."""
    state = read_state(path)
    if state is None:
        return 0, 0.0
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    for name, g in generators.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), float(state["elapsed"])


def warmup_cosine(base_lr: float, step: int, warmup: int, steps: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from `base_lr` towards 0 at `steps`."""
    return base_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
