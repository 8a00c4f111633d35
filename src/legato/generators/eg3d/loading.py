"""Build an `EG3DGenerator` from what the restricted NVlabs reader extracts from a pickle: the
TriPlaneGenerator's `init_args`/`init_kwargs`, its tensors by name, and its plain attributes
(`neural_rendering_resolution`, `rendering_kwargs`). Nothing in the file is executed."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from legato.errors import CheckpointError
from legato.generators.construct import construct_and_load
from legato.generators.eg3d.generator import EG3DGenerator, EG3DOptions
from legato.generators.eg3d.triplane import TriPlaneGenerator

CLASS_NAMES = ("TriPlaneGenerator",)  # `training.triplane.TriPlaneGenerator` in the EG3D repository
_ARG_NAMES = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


def _plain(value):
    """EasyDicts and other mappings from the reader → plain dicts (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def build_eg3d(init_args, init_kwargs: Mapping, tensors: Mapping[str, torch.Tensor],
               attributes: Mapping | None = None, device: str | torch.device = "cpu",
               options: EG3DOptions | None = None, source: str = "the pickle") -> EG3DGenerator:
    """Construct the network from its pickled constructor arguments and load `tensors` with `strict=True`."""
    attributes = dict(attributes or {})
    kwargs = _plain(dict(init_kwargs))
    for name, value in zip(_ARG_NAMES, list(init_args or ()), strict=False):
        kwargs[name] = value
    if "rendering_kwargs" in attributes:  # the trained object's own copy wins (as the reference reloads it)
        kwargs["rendering_kwargs"] = _plain(attributes["rendering_kwargs"])
    missing = [k for k in ("z_dim", "c_dim", "w_dim", "img_resolution") if k not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: the EG3D network's constructor arguments lack {', '.join(missing)}")
    net = construct_and_load(TriPlaneGenerator, kwargs, tensors, source=source, kind="EG3D")
    if "neural_rendering_resolution" in attributes:
        net.neural_rendering_resolution = int(attributes["neural_rendering_resolution"])
    else:  # the super-resolution module's input size is what the network was trained at
        net.neural_rendering_resolution = net.superresolution.input_resolution
    net.eval().requires_grad_(False)
    return EG3DGenerator(net, options).to(device)


def network_parts(net: TriPlaneGenerator, init_kwargs: Mapping) -> dict:
    """What a writer of the NVlabs format needs to store `net` as a `TriPlaneGenerator` (test fixtures):
    class name, constructor kwargs, tensors by name and the plain attributes the reader gives back."""
    return {
        "class_name": CLASS_NAMES[0],
        "init_args": (),
        "init_kwargs": _plain(dict(init_kwargs)),
        "tensors": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "attributes": {"neural_rendering_resolution": int(net.neural_rendering_resolution),
                       "rendering_kwargs": _plain(dict(net.rendering_kwargs))},
    }
