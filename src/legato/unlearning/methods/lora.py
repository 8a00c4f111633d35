"""`lora`: low-rank updates W + s·B·A to the synthesis convolutions of the blocks the adapters sit on, base
frozen (LoRA, as PEFT applies it to convolutions: A `[r, in·k·k]`, B `[out, r]`, B zero at the start, so the
model starts as the source). The dial is PEFT's `scale`: s = strength ∈ [0, 1].

The rank defaults to the one whose trained parameters come nearest legato's adapters on the same model
(`matching_rank`), so that the two are compared at the same budget. Saved as a bundle folder like the
adapters (`adapter_model.safetensors` + `adapter_config.json`, `peft_type: "LORA"`) tied to the base by the
sha256 fingerprint of its weights, and refused on any other base.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from legato import __version__
from legato.errors import CheckpointError, InputError
from legato.files import atomic_directory
from legato.ode import ODEAdapter, fingerprint
from legato.ode.strength_map import StrengthMap
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.methods.base import BUNDLE_CONFIG, LoadedResult, Method, Trainable, bundle_peft_type
from legato.unlearning.methods.dials import ScaledDial

PEFT_TYPE = "LORA"
WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = BUNDLE_CONFIG


class LowRankUpdate(nn.Module):
    """A parametrization of a weight `[out, …]`: W ↦ W + scale·(B·A) reshaped to W's shape."""

    def __init__(self, shape: torch.Size, rank: int) -> None:
        super().__init__()
        fan_in = math.prod(shape[1:])
        self.lora_A = nn.Parameter(torch.empty(rank, fan_in))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's initialisation of A
        self.lora_B = nn.Parameter(torch.zeros(shape[0], rank))
        self.scale = 1.0

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.scale == 0.0:
            return weight
        return weight + self.scale * (self.lora_B @ self.lora_A).view_as(weight)


def target_modules(model: nn.Module, sites: list[str]) -> list[str]:
    """The convolutions of the blocks holding the adapter sites: every module with its own 4-D `weight`
    inside the block's children named conv* (NVIDIA's `conv0`/`conv1`, or a conv wrapped in them)."""
    modules = dict(model.named_modules())
    found = []
    for site in sites:
        block_name = site.rsplit(".", 1)[0] if "." in site else ""
        for child_name, child in modules[block_name].named_children():
            if not child_name.startswith("conv"):
                continue
            for sub_name, sub in child.named_modules():
                weight = sub._parameters.get("weight")
                if weight is not None and weight.dim() == 4:
                    name = ".".join(x for x in (block_name, child_name, sub_name) if x)
                    if name not in found:
                        found.append(name)
    if not found:
        raise InputError(f"no convolution weights found in the blocks of the adapter sites {sites}")
    return found


def params_per_rank(model: nn.Module, names: list[str]) -> int:
    modules = dict(model.named_modules())
    return sum(w.shape[0] + math.prod(w.shape[1:]) for w in (modules[n].weight for n in names))


def adapter_parameter_count(model: nn.Module, config: UnlearnConfig | None = None) -> int:
    """How many parameters legato's adapters would train on `model` (built aside, nothing attached); by
    default with the settings legato itself gets on this model (`UnlearnConfig.for_generator`)."""
    config = config or UnlearnConfig.for_generator(model, method="legato")
    modules = dict(model.named_modules())
    total = 0
    for site in model.adapter_sites():
        m = modules[site]
        channels = getattr(m, "out_channels", None) or m.weight.shape[0]
        adapter = ODEAdapter(int(channels), hidden=config.hidden, field=config.field,
                             condition_dim=getattr(model, "w_dim", None), gate_hidden=config.gate_hidden)
        total += sum(p.numel() for p in adapter.parameters())
    return total


def matching_rank(model: nn.Module) -> int:
    """The rank whose trained parameters come nearest legato's adapters at their defaults on `model`."""
    names = target_modules(model, list(model.adapter_sites()))
    return max(1, round(adapter_parameter_count(model) / params_per_rank(model, names)))


class LoRASet(ScaledDial):
    """The low-rank updates on one model: the dial (`strength`, `enabled`), their parameters, save/remove."""

    def __init__(self, model: nn.Module, names: list[str], rank: int, base_fingerprint: str) -> None:
        super().__init__()
        self.model, self.names, self.rank, self.base_fingerprint = model, list(names), int(rank), base_fingerprint
        modules = dict(model.named_modules())
        self.updates: dict[str, LowRankUpdate] = {}
        for p in model.parameters():
            p.requires_grad_(False)
        for name in self.names:
            module = modules[name]
            update = LowRankUpdate(module.weight.shape, self.rank).to(module.weight.device, module.weight.dtype)
            parametrize.register_parametrization(module, "weight", update)
            self.updates[name] = update
        self.metadata: dict = {}

    def _apply(self, scale: float) -> None:
        for u in self.updates.values():
            u.scale = scale

    def named_parameters(self) -> dict[str, nn.Parameter]:
        return {f"{n}::{k}": p for n, u in self.updates.items() for k, p in u.named_parameters()}

    def remove(self) -> None:
        """Take the updates off; the model's weights are the base's again."""
        modules = dict(self.model.named_modules())
        for name in self.names:
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=False)
        self.updates = {}

    def save(self, directory: Path, metadata: dict | None = None) -> Path:
        directory = Path(directory)
        tensors = {k: p.detach().cpu().contiguous() for k, p in self.named_parameters().items()}
        config = {"peft_type": PEFT_TYPE, "legato_version": __version__, "r": self.rank, "lora_alpha": self.rank,
                  "target_modules": self.names, "strength": self._strength,
                  "strength_map": None if self.strength_map is None else self.strength_map.to_json(),
                  "base_model_fingerprint": self.base_fingerprint, "metadata": {**self.metadata, **(metadata or {})}}
        with atomic_directory(directory) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "peft_type": PEFT_TYPE})
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        return directory


def apply_lora(model: nn.Module, rank: int, names: list[str] | None = None) -> LoRASet:
    """Put zero-initialised rank-`rank` updates on `model`'s adapter-site blocks (the model is frozen)."""
    if rank < 1:
        raise InputError(f"--lora-rank must be at least 1 (got {rank})")
    base = fingerprint(model)  # before the parametrizations rename the weights in the state dict
    return LoRASet(model, names or target_modules(model, list(model.adapter_sites())), rank, base)


def _build(generator: nn.Module, config: UnlearnConfig, adapter_name: str) -> Trainable:
    rank = config.lora_rank or matching_rank(generator)
    lora = apply_lora(generator, rank)
    named = lora.named_parameters()
    return Trainable("lora", generator, list(named.values()), dial=lora, _named=named,
                     save_fn=lambda directory, metadata: lora.save(directory, metadata))


def _read_config(directory: Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def holds(directory: Path) -> bool:
    from legato.unlearning.methods.modules import holds_peft_lora

    # LoRA injected by PEFT into a UNet (`methods.modules.save_peft_lora`) is another format
    return bundle_peft_type(directory) == PEFT_TYPE and not holds_peft_lora(directory)


def load(directory: Path, generator: nn.Module) -> LoadedResult:
    """Apply the LoRA bundle in `directory` to `generator` (refused on other base weights)."""
    directory = Path(directory)
    config = _read_config(directory)
    expected, actual = config.get("base_model_fingerprint"), fingerprint(generator)
    if expected != actual:
        raise CheckpointError(f"LoRA bundle {directory} was trained on other base weights (fingerprint {expected}, "
                              f"this model is {actual}); load the generator it was made for")
    names = list(config.get("target_modules") or [])
    unknown = [n for n in names if n not in dict(generator.named_modules())]
    if unknown:
        raise CheckpointError(f"LoRA bundle {directory} targets modules this model lacks: {unknown}")
    try:
        tensors = load_file(str(directory / WEIGHTS_NAME))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {directory / WEIGHTS_NAME}: {e}") from e
    lora = LoRASet(generator, names, int(config["r"]), expected)
    try:
        with torch.no_grad():
            for key, p in lora.named_parameters().items():
                t = tensors.get(key)
                if t is None or t.shape != p.shape:
                    raise CheckpointError(f"LoRA bundle {directory}: tensor {key!r} is missing or has the wrong shape")
                if not torch.isfinite(t).all():
                    raise CheckpointError(f"LoRA bundle {directory}: tensor {key!r} holds NaN or inf")
                p.copy_(t)
        lora.strength_map = StrengthMap.from_json(config.get("strength_map"), where=str(directory / CONFIG_NAME))
        lora.strength = float(config.get("strength", 1.0))
    except BaseException:
        lora.remove()
        raise
    lora.metadata = dict(config.get("metadata", {}))
    return LoadedResult("lora", generator, lora, state=lora.named_parameters())


LORA = Method("lora", "low-rank updates B·A to the adapter blocks' convolutions, base frozen (rank matched to "
              "legato's parameter count)", "the LoRA scale (W + s·B·A)", _build, holds, load)
