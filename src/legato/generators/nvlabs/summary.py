"""What an NVlabs network pickle holds, as plain JSON-able data (for `legato inspect`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from legato.generators.nvlabs.reader import NetworkRecord, read_network_pickle

_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_ws")
_OPTION_KEYS = ("architecture", "channel_base", "channel_max", "num_fp16_res", "conv_clamp")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)[:200]


def network_summary(record: NetworkRecord) -> dict[str, Any]:
    """Class, sizes and options of one network, from its attributes, constructor arguments and tensors."""
    tensors = record.tensors()
    kwargs = dict(record.init_kwargs)
    syn_kwargs = dict(kwargs.get("synthesis_kwargs") or {})
    out: dict[str, Any] = {"class_name": record.class_name, "format_version": record.version}
    for key in _KEYS:
        value = record.attributes.get(key, kwargs.get(key))
        if value is not None:
            out[key] = _jsonable(value)
    mapping_layers = {int(m.group(1)) for name in tensors if (m := re.match(r"mapping\.fc(\d+)\.weight$", name))}
    if mapping_layers:
        out["mapping_layers"] = len(mapping_layers)
    for key in _OPTION_KEYS:
        value = syn_kwargs.get(key, kwargs.get(key))
        if value is not None:
            out[key] = _jsonable(value)
    out["parameters"] = record.parameter_count()
    out["tensors"] = len(tensors)
    out["fp16_tensors"] = sum(1 for t in tensors.values() if str(t.dtype) == "torch.float16")
    src = record.module_src.encode()
    out["module_src"] = {"bytes": len(src), "sha256": hashlib.sha256(src).hexdigest()[:16], "executed": False}
    return out


def summarize_pickle(path: str | Path) -> dict[str, Any]:
    """`{"file": ..., "networks": {key: summary}, "other": {key: value}}` for an NVlabs network pickle."""
    contents = read_network_pickle(path)
    networks, other = {}, {}
    for key, value in contents.items():
        if isinstance(value, NetworkRecord):
            networks[str(key)] = network_summary(value)
        else:
            other[str(key)] = _jsonable(value)
    return {"file": str(path), "networks": networks, "other": other}
