"""Adapter bundles: a PEFT-shaped folder with `adapter_model.safetensors` and `adapter_config.json`.

The config records the sites, the field and solver settings, the strength, the sha256 fingerprint of the
base model's weights and free-form metadata (method, forgotten identities, metrics). Loading refuses a
bundle made for other base weights, with unknown sites or with tensors of the wrong shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from legato import __version__
from legato.errors import CheckpointError, InputError
from legato.files import atomic_directory
from legato.ode.adapter_set import AdapterConfig, AdapterSet, _key, attach
from legato.ode.fingerprint import fingerprint
from legato.ode.strength_map import StrengthMap

PEFT_TYPE = "LEGATO"
WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"


def save_bundle(adapter_set: AdapterSet, directory, metadata: dict | None = None) -> Path:
    directory = Path(directory)
    tensors = {}
    for site in adapter_set.sites:
        for pname, p in adapter_set.adapter(site).state_dict().items():
            tensors[f"{site}::{pname}"] = p.detach().to("cpu").contiguous()
    config = {
        "peft_type": PEFT_TYPE,
        "legato_version": __version__,
        "name": adapter_set.name,
        "target_sites": adapter_set.sites,
        "channels": {s: adapter_set.adapter(s).channels for s in adapter_set.sites},
        **adapter_set.config.to_dict(),
        "strength": adapter_set.strength,
        "strength_map": None if adapter_set.strength_map is None else adapter_set.strength_map.to_json(),
        "base_model_fingerprint": fingerprint(adapter_set.model),
        "metadata": {**adapter_set.metadata, **(metadata or {})},
    }
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "peft_type": PEFT_TYPE})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def read_config(directory) -> dict:
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise InputError(f"adapter folder {directory} does not exist")
    if not cfg_path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{directory} is not an adapter bundle: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({e})") from e
    if config.get("peft_type") != PEFT_TYPE:
        raise CheckpointError(f"{cfg_path} has peft_type {config.get('peft_type')!r}, expected {PEFT_TYPE!r}")
    return config


def load_bundle(
    directory, model: nn.Module, name: str | None = None, verify_fingerprint: bool = True
) -> AdapterSet:
    """Attach the adapters stored in `directory` to `model` and return the set (at its saved strength)."""
    directory = Path(directory)
    config = read_config(directory)
    if verify_fingerprint:
        expected, actual = config.get("base_model_fingerprint"), fingerprint(model)
        if expected != actual:
            raise CheckpointError(
                f"adapter bundle {directory} was trained on other base weights (fingerprint {expected}, "
                f"this model is {actual}); load the generator it was made for"
            )
    sites = config.get("target_sites") or []
    modules = dict(model.named_modules())
    unknown = [s for s in sites if s not in modules]
    if unknown:
        raise CheckpointError(f"adapter bundle {directory} targets sites this model lacks: {unknown}")
    try:
        tensors = load_file(str(directory / WEIGHTS_NAME))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {directory / WEIGHTS_NAME}: {e}") from e
    fields = {k: config[k] for k in AdapterConfig.__dataclass_fields__ if k in config}
    try:
        channels = {s: int(c) for s, c in (config.get("channels") or {}).items()}
        adapter_set = attach(model, sites, name=str(name or config.get("name", "default")), channels=channels,
                             **fields)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as e:  # a damaged or edited config
        detail = " ".join(str(e).split())[:160]
        raise CheckpointError(f"{directory / CONFIG_NAME}: its settings do not make an adapter "
                              f"({type(e).__name__}: {detail})") from e
    try:
        for site in sites:
            adapter = adapter_set.adapters[_key(site)]
            own = adapter.state_dict()
            state = {}
            for pname, ref in own.items():
                key = f"{site}::{pname}"
                if key not in tensors:
                    raise CheckpointError(f"adapter bundle {directory} lacks tensor {key!r}")
                t = tensors[key]
                if t.shape != ref.shape:
                    raise CheckpointError(
                        f"adapter bundle {directory}: tensor {key!r} has shape {tuple(t.shape)}, "
                        f"the model needs {tuple(ref.shape)}"
                    )
                if not torch.isfinite(t).all():
                    raise CheckpointError(f"adapter bundle {directory}: tensor {key!r} holds NaN or inf")
                state[pname] = t
            adapter.load_state_dict(state)
        adapter_set.strength_map = StrengthMap.from_json(config.get("strength_map"), where=str(directory / CONFIG_NAME))
        adapter_set.strength = float(config.get("strength", 1.0))
    except BaseException:
        adapter_set.detach()
        raise
    adapter_set.metadata = dict(config.get("metadata", {}))
    return adapter_set
