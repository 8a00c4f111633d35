"""Full fine-tuning of the synthesis weights: `guide` (GUIDE: the UFO target, local + adjacency + global terms)
and `baseline` (GUIDE's baseline: towards the average face, local term only). The result is the fine-tuned
tensors (`finetuned_weights.safetensors`); there is no strength dial. SalUn (`salun.py`) builds on this."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from legato.errors import CheckpointError
from legato.files import atomic_write_json
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.methods.base import LoadedResult, Method, Trainable

WEIGHTS_FILE = "finetuned_weights.safetensors"
CONFIG_FILE = "finetune_config.json"


def save_finetuned(directory: Path, tensors: dict[str, torch.Tensor], method: str, metadata: dict) -> None:
    """The fine-tuned tensors (by parameter name) and what made them, as `load` reads them back."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: t.detach().cpu().contiguous() for k, t in tensors.items()}, str(directory / WEIGHTS_FILE))
    atomic_write_json(directory / CONFIG_FILE, {"method": method, "metadata": metadata})


def finetuned_copy(generator: nn.Module, method: str, local_only: bool = False) -> Trainable:
    """A deep copy of `generator` whose synthesis parameters (`synthesis_parameters()`) train."""
    unlearned = copy.deepcopy(generator)
    for p in unlearned.parameters():
        p.requires_grad_(False)
    trainable_ids = {id(p) for p in unlearned.synthesis_parameters()}
    named = {n: p for n, p in unlearned.named_parameters() if id(p) in trainable_ids}
    for p in named.values():
        p.requires_grad_(True)

    def save(directory: Path, metadata: dict) -> None:
        save_finetuned(directory, named, method, metadata)

    return Trainable(method, unlearned, list(named.values()), local_only=local_only, _named=named, save_fn=save)


def _build(generator: nn.Module, config: UnlearnConfig, adapter_name: str) -> Trainable:
    return finetuned_copy(generator, config.method, local_only=config.method == "baseline")


def holds(directory: Path) -> bool:
    return (Path(directory) / WEIGHTS_FILE).is_file()


def load(directory: Path, generator: nn.Module) -> LoadedResult:
    """Copy the fine-tuned tensors into `generator` (refused when a tensor does not fit it)."""
    path = Path(directory) / WEIGHTS_FILE
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    params = dict(generator.named_parameters())
    for name, t in tensors.items():
        if name not in params or params[name].shape != t.shape:
            raise CheckpointError(f"{path}: tensor {name!r} does not fit this generator; load the generator it was "
                                  "trained from")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or inf")
    with torch.no_grad():
        for name, t in tensors.items():
            params[name].copy_(t)
    method = "guide"
    try:
        import json

        method = json.loads((Path(directory) / CONFIG_FILE).read_text()).get("method", method)
    except (OSError, ValueError):
        pass
    return LoadedResult(method, generator, None, state={name: params[name] for name in tensors})


GUIDE = Method("guide", "full fine-tuning of the synthesis weights (GUIDE: UFO target, local, adjacency, global)",
               None, _build, holds, load)
BASELINE = Method("baseline", "full fine-tuning towards the average face, local term only (GUIDE's baseline)",
                  None, _build, holds, load)
