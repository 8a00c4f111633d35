"""What the training recipes share: their checkpoint (resume) and their learning-rate schedule.

A checkpoint holds the `state_dict()` of named modules/optimisers, the state of named random generators,
torch's global RNG, the step and the elapsed seconds; it is written atomically and read with
`weights_only=True`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from legato.files import atomic_write_bytes


def save_checkpoint(path: Path, stateful: dict, generators: dict[str, torch.Generator], step: int,
                    elapsed: float) -> None:
    """`stateful`: name → module or optimiser; `generators`: name → torch.Generator."""
    buf = io.BytesIO()
    torch.save({**{k: v.state_dict() for k, v in stateful.items()},
                **{k: g.get_state() for k, g in generators.items()},
                "torch_rng": torch.get_rng_state(), "step": step, "elapsed": elapsed}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, stateful: dict, generators: dict[str, torch.Generator]) -> tuple[int, float]:
    """Restore what `save_checkpoint` wrote under the same names; (0, 0.0) when there is no checkpoint."""
    if not path.is_file():
        return 0, 0.0
    state = torch.load(path, weights_only=True)
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    for name, g in generators.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), float(state["elapsed"])


def warmup_cosine(base_lr: float, step: int, warmup: int, steps: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from `base_lr` towards 0 at `steps`."""
    return base_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
