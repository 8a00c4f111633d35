"""Reading user-supplied weights safely and checking them by name.

PyTorch state dicts are read with `weights_only=True`; NumPy `.npy` files that pickle a dict of arrays
(the MTCNN weights of the papers' evaluation code) with an unpickler that can build arrays and nothing else.
"""

from __future__ import annotations

import codecs
import pickle
import re
from pathlib import Path

import numpy as np
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


def state_mismatch(own: dict, given: dict) -> str | None:
    """What keeps the tensors `given` (names → arrays or tensors) from loading into a module whose state dict
    is `own`: missing, unexpected and wrong-shaped names, as one phrase; None when they fit."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    wrong = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in given and tuple(given[k].shape) != tuple(v.shape)]
    parts = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})"] if missing else []
    parts += [f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})"] if unexpected else []
    parts += [f"{len(wrong)} of the wrong shape (e.g. {wrong[0]})"] if wrong else []
    return "; ".join(parts) or None


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, expected: str) -> None:
    """Copy `state` into `model` by name, or raise a `CheckpointError` saying what does not fit."""
    own = model.state_dict()
    # Checkpoints written before PyTorch 0.4.1 have no BatchNorm step counters; they are not weights.
    given, state = state, {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    mismatch = state_mismatch(own, state)
    if mismatch:
        raise CheckpointError(
            f"{path}: does not fit {expected}: {mismatch}. The file looks like "
            f"{describe_ir_checkpoint(given)}; arcface:PATH takes model_ir_se50.pth, curricularface:PATH "
            "takes CurricularFace_Backbone.pth"
        )
    model.load_state_dict({k: state[k] for k in own}, strict=True)


# The function NumPy pickles arrays with (`numpy.core.multiarray._reconstruct`, `numpy._core...` in
# NumPy 2), taken from an array's own reduction so no deprecated module is imported to find it.
_RECONSTRUCT = np.empty(0).__reduce__()[0]


class _Refused(Exception):
    """A pickle asked for a global outside the allowed few."""


class _ArrayUnpickler(pickle.Unpickler):
    """Builds NumPy arrays, dtypes and plain containers; every other global is refused, so nothing runs."""

    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles carry an array's bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise _Refused(f"{module}.{name}")
        return self.allowed[(module, name)]


def read_pickled_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a `.npy` file holding a pickled dict name → array (`np.save(path, {...})`).

    Never runs code stored in the file: the pickle may build only arrays and dtypes (see
    `_ArrayUnpickler`); a file that asks for anything else is refused with a `CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise CheckpointError(f"{path}: .npy format version {version} is not supported (1.0 or 2.0)")
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            if dtype != np.dtype(object) or shape != ():
                raise CheckpointError(
                    f"{path}: holds a {dtype} array of shape {shape}, not a pickled dict of arrays"
                )
            obj = _ArrayUnpickler(f).load()
    except _Refused as e:
        raise CheckpointError(
            f"{path}: refused to load: the file asks to run or build {e}, not just arrays "
            "(only a pickled dict of NumPy arrays is accepted)"
        ) from None
    except CheckpointError:
        raise
    except Exception as e:  # a corrupt or truncated pickle fails in many ways; none of them runs code
        detail = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a readable .npy weights file ({type(e).__name__}: {detail})") from e
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    ):
        raise CheckpointError(f"{path}: expected a dict of names → arrays, found {type(obj).__name__}")
    return obj
