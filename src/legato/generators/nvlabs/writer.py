"""A small writer of the NVlabs persistence format, for test fixtures and round trips.

Each network becomes `torch_utils.persistence._reconstruct_persistent_obj(meta)` in the pickle stream, with
`meta = {type, version, module_src, class_name, state}` and the sub-modules nested in `state['_modules']`,
exactly the shape NVIDIA's `persistence` module produces. `module_src` is whatever text the caller gives
(the reader never runs it).
"""

from __future__ import annotations

import collections
import io
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from legato.files import atomic_write_bytes
from legato.generators.nvlabs.reader import PERSISTENCE_HOOK

FORMAT_VERSION = 6  # `_version` of torch_utils.persistence in stylegan2-ada-pytorch, stylegan3 and EG3D
BUFFER_NAMES = ("w_avg", "noise_const", "resample_filter")  # tensors NVIDIA's networks hold as buffers
PLACEHOLDER_SRC = "# module source omitted: written by legato for tests; never executed by legato\n"


def _hook() -> None:
    """Stands for NVIDIA's reconstruct hook in the stream; the pickler writes its NVIDIA name instead."""


class _Persistent:
    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self):
        return _hook, (self.meta,)


class _Pickler(pickle._Pickler):  # the pure-Python pickler, so how functions are written can be changed
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_function(self, obj, name=None):
        if obj is _hook:
            module, qualname = PERSISTENCE_HOOK
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
            self.memoize(obj)
            return
        self.save_global(obj, name)

    dispatch[types.FunctionType] = _save_function


def _module_state(tensors: Mapping[str, torch.Tensor], children: dict, attributes: Mapping[str, Any]) -> dict:
    params, buffers = collections.OrderedDict(), collections.OrderedDict()
    for name, value in tensors.items():
        if name in BUFFER_NAMES:
            buffers[name] = value.detach().clone()
        else:
            params[name] = nn.Parameter(value.detach().clone(), requires_grad=False)
    state = {"training": False, "_parameters": params, "_buffers": buffers,
             "_non_persistent_buffers_set": set(), "_modules": collections.OrderedDict(children)}
    state.update(attributes)
    return state


def _nest(tensors: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Split dotted names into this level's tensors and per-child dicts."""
    own, below = {}, collections.OrderedDict()
    for name, value in tensors.items():
        head, _, rest = name.partition(".")
        if rest:
            below.setdefault(head, {})[rest] = value
        else:
            own[name] = value
    return own, below


def _record(class_name: str, tensors: Mapping[str, torch.Tensor], module_src: str, init_args=(),
            init_kwargs: Mapping | None = None, attributes: Mapping | None = None) -> _Persistent:
    own, below = _nest(tensors)
    children = {name: _record("Module", sub, module_src) for name, sub in below.items()}
    state = _module_state(own, children, dict(attributes or {}))
    state["_init_args"] = tuple(init_args)
    state["_init_kwargs"] = dict(init_kwargs or {})
    return _Persistent({"type": "class", "version": FORMAT_VERSION, "module_src": module_src,
                        "class_name": class_name, "state": state})


def network_pickle_bytes(networks: Mapping[str, Mapping | None], module_src: str = PLACEHOLDER_SRC,
                         extra: Mapping[str, Any] | None = None) -> bytes:
    """Serialise `{"G_ema": parts, "G": parts, "D": None, ...}` where `parts` has `class_name`, `init_args`,
    `init_kwargs`, `tensors` (flat, as `state_dict()` names them) and `attributes`."""
    content: dict[str, Any] = {}
    for key, parts in networks.items():
        content[key] = None if parts is None else _record(
            parts["class_name"], parts["tensors"], module_src, parts.get("init_args", ()),
            parts.get("init_kwargs"), parts.get("attributes"))
    content.update(extra or {})
    buf = io.BytesIO()
    _Pickler(buf, protocol=4).dump(content)
    return buf.getvalue()


def write_network_pickle(path: str | Path, networks: Mapping[str, Mapping | None],
                         module_src: str = PLACEHOLDER_SRC, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `networks` (see `network_pickle_bytes`) atomically to `path`."""
    path = Path(path)
    atomic_write_bytes(path, network_pickle_bytes(networks, module_src, extra))
    return path
