"""A restricted reader of NVlabs network pickles (`torch_utils.persistence` format).

In those files each network is stored as a call `torch_utils.persistence._reconstruct_persistent_obj(meta)`
where `meta` holds `class_name`, `module_src` (the Python source of the defining module, which NVIDIA's
loader executes) and `state` (the object's `__dict__`: `_init_args`, `_init_kwargs`, `_parameters`,
`_buffers`, `_modules`, plain attributes). This reader turns every such call into a `NetworkRecord`
holding that data as plain Python; `module_src` is kept only as text and is never imported or executed.
Any other global the pickle asks for is refused with a `CheckpointError` naming it.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from legato.errors import CheckpointError

PERSISTENCE_HOOK = ("torch_utils.persistence", "_reconstruct_persistent_obj")


@dataclass
class NetworkRecord:
    """One persistent object of the pickle (a network or one of its sub-modules), read without running it."""

    class_name: str
    module_src: str
    version: int | None
    state: dict = field(repr=False)

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()) or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}) or {})

    @property
    def children(self) -> dict[str, NetworkRecord]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, NetworkRecord)}

    @property
    def attributes(self) -> dict[str, Any]:
        """Plain public attributes of the object (e.g. `z_dim`, `rendering_kwargs`)."""
        return {k: v for k, v in self.state.items() if not k.startswith("_")}

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and persistent buffer below this object, named as in `state_dict()`."""
        out: dict[str, torch.Tensor] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{prefix}{name} in the pickle is not a tensor ({type(value).__name__})")
                out[prefix + name] = value.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, NetworkRecord):
                raise CheckpointError(f"sub-module {prefix}{name} is not an NVlabs persistent object")
            out.update(child.tensors(prefix + name + "."))
        return out

    def parameter_count(self) -> int:
        count = 0
        for name, value in self.tensors().items():
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in ("w_avg", "noise_const", "resample_filter"):
                count += value.numel()
        return count


class _AttrDict(dict):
    """Stands in for `dnnlib.EasyDict` (a dict whose keys are also attributes)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _persistent(meta: dict) -> NetworkRecord:
    if not isinstance(meta, dict) or meta.get("type", "class") != "class":
        raise CheckpointError("the pickle holds a persistent object of an unknown kind")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {meta.get('class_name')!r} has a state that is not a dict")
    return NetworkRecord(class_name=str(meta.get("class_name")), module_src=str(meta.get("module_src") or ""),
                         version=meta.get("version"), state=dict(state))


def _storage_from_bytes(data: bytes):
    """`torch.storage._load_from_bytes`, but with the tensor-only loader (it would otherwise unpickle freely)."""
    try:
        with warnings.catch_warnings():  # torch warns of odd pickle protocols in damaged data: it is refused
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any failure means the storage cannot be trusted
        # torch's own message is many lines and suggests weights_only=False, which would run code from the file
        raise CheckpointError(f"a tensor storage in the pickle is damaged or not plain tensor data "
                              f"({type(e).__name__})") from e


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise CheckpointError("the pickle holds a numpy scalar of an unsupported kind")
    return np.frombuffer(data, dtype=dtype)[0].item()


def _numpy_dtype(*args):
    return np.dtype(*args)


def _numpy_reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise CheckpointError("the pickle holds a numpy array subclass, which is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, typecode)


def _torch_dtype(name: str) -> torch.dtype | None:
    value = getattr(torch, name, None)
    return value if isinstance(value, torch.dtype) else None


_ALLOWED: dict[tuple[str, str], Any] = {
    PERSISTENCE_HOOK: _persistent,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("dnnlib.util", "EasyDict"): _AttrDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}



# EG3D: EG3D pickles keep a few plain (non-persistent) torch modules by class reference: the decoder, the
# renderer, the ray marcher/sampler and torch containers. The pickle rebuilds each with `cls.__new__(cls)`
# and sets its `__dict__`; these stand-ins accept that state as an inert record (no code from the file runs,
# no class of NVIDIA's or torch's is instantiated), so the tensors below them are found by name.
EG3D_PLAIN_MODULES = (
    ("training.triplane", "OSGDecoder"),
    ("training.volumetric_rendering.renderer", "ImportanceRenderer"),
    ("training.volumetric_rendering.ray_marcher", "MipRayMarcher2"),
    ("training.volumetric_rendering.ray_sampler", "RaySampler"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.activation", "Softplus"),
)


class _PlainModuleRecord(NetworkRecord):
    qualified_name = ""

    def __init__(self) -> None:  # only reached through `__new__` + `__setstate__` when unpickling
        super().__init__(self.qualified_name.rsplit(".", 1)[-1], "", None, {})

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.qualified_name} in the pickle has a state that is not a dict")
        self.class_name, self.module_src, self.version = self.qualified_name.rsplit(".", 1)[-1], "", None
        self.state = dict(state)


for _module, _name in EG3D_PLAIN_MODULES:
    _ALLOWED[(_module, _name)] = type(_name, (_PlainModuleRecord,), {"qualified_name": f"{_module}.{_name}"})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and _torch_dtype(name) is not None:
            return _torch_dtype(name)
        raise CheckpointError(
            f"refusing to load: the pickle asks for the global {module}.{name}, which is not part of the "
            "NVlabs network format (a file that needs it may run code when loaded; legato never does)")

    def persistent_load(self, pid):
        raise CheckpointError("refusing to load: the pickle uses persistent ids, which the NVlabs format does not")


def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """Read an NVlabs network pickle into `{"G": NetworkRecord, "G_ema": ..., "D": ..., ...}` without
    executing anything from it. A pickle holding a single network is returned as `{"G_ema": record}`."""
    path = Path(path)
    if path.is_dir():
        hint = (f"; it holds an adapter bundle: `legato adapter info {path}`"
                if (path / "adapter_config.json").is_file() else "")
        raise CheckpointError(f"{path} is a folder, not a network pickle{hint}")
    try:
        with path.open("rb") as f:
            data = _RestrictedUnpickler(f).load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} does not exist") from e
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, RuntimeError) as e:  # a damaged file (a length can ask
        # for any size, a tensor's rebuild any argument)
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path} is not a readable network pickle ({type(e).__name__}: {detail})") from e
    if isinstance(data, NetworkRecord):
        return {"G_ema": data}
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a dict of networks (found {type(data).__name__})")
    return dict(data)


def main_network(contents: dict[str, Any], path: str | Path = "the pickle") -> tuple[str, NetworkRecord]:
    """The generator to use: `G_ema` (the averaged weights NVIDIA renders with), else `G`."""
    for key in ("G_ema", "G"):
        if isinstance(contents.get(key), NetworkRecord):
            return key, contents[key]
    raise CheckpointError(f"{path} holds no generator network (no 'G_ema' or 'G'); keys: {sorted(contents)}")
