"""Shipped weights of the digits flow and classifier: safetensors with the architecture in the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from legato.errors import CheckpointError, InputError
from legato.files import atomic_write_bytes

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FLOW_WEIGHTS = WEIGHTS_DIR / "digits_flow.safetensors"
CLASSIFIER_WEIGHTS = WEIGHTS_DIR / "digits_classifier.safetensors"


def save_weights(
    module: nn.Module, path: str | Path, kind: str, config: dict, extra: dict | None = None
) -> Path:
    """Write `module`'s state_dict as safetensors, atomically, with `kind` and `config` as metadata."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    meta = {"kind": kind, "config": json.dumps(config), "extra": json.dumps(extra or {})}
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def read_metadata(path: str | Path, kind: str) -> tuple[dict, dict]:
    """(config, extra) stored in a weights file; refuses a file of another kind."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"weights file {path} does not exist; train it with `legato flow train` or pass another"
        )
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from e
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} holds {meta.get('kind')!r} weights, expected {kind!r}")
    try:
        return json.loads(meta.get("config", "{}")), json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has unreadable metadata ({e})") from e


def load_state(module: nn.Module, path: str | Path) -> nn.Module:
    """Load tensors into `module` by name, checking names, shapes and finiteness."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, t in tensors.items():
        if t.shape != own[k].shape:
            raise CheckpointError(
                f"{path}: tensor {k!r} has shape {tuple(t.shape)}, expected {tuple(own[k].shape)}"
            )
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor {k!r} holds NaN or inf")
    module.load_state_dict(tensors)
    return module


def load_flow(path: str | Path | None = None):
    """The digits flow UNet (eval mode, on CPU) from `path` or the shipped weights."""
    from legato.flows.unet import FlowUNet, UNetConfig

    path = Path(path) if path is not None else FLOW_WEIGHTS
    config, _ = read_metadata(path, "digits-flow-unet")
    model = FlowUNet(UNetConfig.from_dict(config))
    return load_state(model, path).eval()


def load_classifier(path: str | Path | None = None):
    """The evaluation classifier (eval mode) from `path` or the shipped weights."""
    from legato.flows.classifier import ClassifierConfig, DigitClassifier

    path = Path(path) if path is not None else CLASSIFIER_WEIGHTS
    config, _ = read_metadata(path, "digits-classifier")
    model = DigitClassifier(ClassifierConfig(**config))
    return load_state(model, path).eval()
