"""NVlabs network pickles (StyleGAN2-ADA, stylegan3's StyleGAN2 configs, EG3D), read without running them."""

from __future__ import annotations

from pathlib import Path

import torch

from legato.errors import CheckpointError, InputError
from legato.generators.base import Generator
from legato.generators.nvlabs.reader import NetworkRecord, main_network, read_network_pickle
from legato.generators.nvlabs.writer import network_pickle_bytes, write_network_pickle

__all__ = ["NetworkRecord", "load_network_pickle", "main_network", "network_pickle_bytes", "read_network_pickle",
           "write_network_pickle"]


def _is_stylegan2(record: NetworkRecord) -> bool:
    return record.class_name == "Generator" and "synthesis.b4.const" in record.tensors()


def load_network_pickle(path: str | Path, device: str | torch.device = "cpu", eg3d_options=None) -> Generator:
    """Load the generator of an NVlabs network pickle (`G_ema`, else `G`) as a native `Generator`.

    `eg3d_options` (an `EG3DOptions`) applies to EG3D networks; giving it for another network is an error.
    """
    contents = read_network_pickle(path)
    key, record = main_network(contents, path)
    source = f"{path} ({key})"
    if _is_stylegan2(record):
        from legato.generators.stylegan2.networks import StyleGAN2Generator, build_stylegan2

        if eg3d_options is not None:
            raise InputError(f"{source}: rendering options (resolution, ray chunk, checkpointing) apply to EG3D "
                             "networks only; this is a StyleGAN2")
        net = build_stylegan2(record.init_args, record.init_kwargs, record.tensors(), source=source)
        return StyleGAN2Generator(net).to(device)
    from legato.generators.eg3d.loading import CLASS_NAMES as EG3D_CLASSES

    if record.class_name in EG3D_CLASSES:
        from legato.generators.eg3d.loading import build_eg3d

        return build_eg3d(record.init_args, record.init_kwargs, record.tensors(), record.attributes,
                          device=device, options=eg3d_options, source=source)
    if record.class_name == "Generator":
        raise CheckpointError(f"{source}: this Generator is not a StyleGAN2 (no synthesis.b4.const); StyleGAN3 "
                              "(alias-free) networks are not supported")
    raise CheckpointError(f"{source}: network class {record.class_name!r} is not supported; supported: StyleGAN2 "
                          f"'Generator', EG3D {', '.join(EG3D_CLASSES)}")
