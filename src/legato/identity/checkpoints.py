"""Reading user-supplied PyTorch state dicts safely (`weights_only=True`) and checking them by name."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from legato.errors import CheckpointError, InputError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `torch.save`d state dict; never runs code stored in the file.

    Accepts a plain state dict, one nested under "state_dict" / "model", and names prefixed with
    "module." (saved from `DataParallel`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    with path.open("rb") as f:
        magic = f.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # torch.save writes a zip; old versions a bare pickle
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (it is neither a torch.save zip nor a pickle)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = re.search(r"GLOBAL (\S+)", str(e))
        if blocked is None:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated)") from e
        raise CheckpointError(
            f"{path}: refused to load: the file asks to run or build {blocked.group(1)}, not just tensors "
            "(only plain state dicts are accepted; re-save it with torch.save(model.state_dict(), path))"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0]})") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (names → tensors), found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def describe_ir_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """A short guess at what IR-family checkpoint this is, for error messages."""
    units = {int(k.split(".")[1]) for k in state if k.startswith("body.") and k.split(".")[1].isdigit()}
    if not units:
        return "not an IR-family face-recognition backbone"
    se = any(".fc1." in k for k in state)
    depth = {24: 50, 49: 100, 50: 152}.get(len(units), f"{len(units)} units")
    return f"an IR{'-SE' if se else ''} backbone ({depth if isinstance(depth, str) else f'depth {depth}'})"


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, expected: str) -> None:
    """Copy `state` into `model` by name, or raise a `CheckpointError` saying what does not fit."""
    own = model.state_dict()
    # Checkpoints written before PyTorch 0.4.1 have no BatchNorm step counters; they are not weights.
    given, state = state, {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {wrong[0]})")
        raise CheckpointError(
            f"{path}: does not fit {expected}: {'; '.join(parts)}. The file looks like "
            f"{describe_ir_checkpoint(given)}; arcface:PATH takes model_ir_se50.pth, curricularface:PATH "
            "takes CurricularFace_Backbone.pth"
        )
    model.load_state_dict({k: state[k] for k in own}, strict=True)
