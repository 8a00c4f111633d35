"""The unlearning methods, one module each behind a small registry (as PEFT's tuners), all trained by the
same loop (`unlearning.trainer`).

| method | trains | dial |
|---|---|---|
| `legato` | Neural-ODE adapters after each synthesis block, base frozen | the ODE's time span |
| `residual` | the same field applied once, x + f(x) | the output scale |
| `lora` | low-rank updates to the adapter blocks' convolutions | the LoRA scale |
| `guide` | every synthesis weight (GUIDE) | none |
| `salun` | the salient half of the synthesis weights, GUIDE's objective | none |
| `baseline` | every synthesis weight, towards the average face, local term only | none |
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from legato.errors import CheckpointError, InputError
from legato.unlearning.config import METHODS as METHOD_NAMES
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.methods.adapters import LEGATO, RESIDUAL
from legato.unlearning.methods.base import ADAPTER_SET_NAME, Dial, LoadedResult, Method, Trainable
from legato.unlearning.methods.finetune import BASELINE, GUIDE
from legato.unlearning.methods.lora import LORA
from legato.unlearning.methods.salun import SALUN

REGISTRY: dict[str, Method] = {m.name: m for m in (LEGATO, GUIDE, RESIDUAL, LORA, SALUN, BASELINE)}
assert tuple(REGISTRY) == METHOD_NAMES, "config.METHODS lists the registered methods, in order"


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build(generator: nn.Module, config: UnlearnConfig, adapter_name: str = ADAPTER_SET_NAME) -> Trainable:
    """Make the model to train for `config.method`. Adapter and LoRA methods change `generator` itself (the
    caller keeps a frozen copy as the source); full fine-tuning trains a deep copy."""
    return get(config.method).build(generator, config, adapter_name)


def load_result(directory, generator: nn.Module) -> LoadedResult:
    """Apply the result saved in `directory` (any method's) to `generator`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"adapter folder {directory} does not exist")
    for method in REGISTRY.values():
        if method.holds(directory):
            return method.load(directory, generator)
    raise CheckpointError(f"{directory} is not an adapter bundle or any other unlearning result: it has neither "
                          "adapter_config.json with adapter_model.safetensors (adapters, LoRA) nor "
                          "finetuned_weights.safetensors (guide, salun, baseline)")


def warm_start(trainable: Trainable, directory, pristine: nn.Module) -> LoadedResult:
    """Start `trainable` from the result saved in `directory` (`--extend`: more people forgotten by the same
    set). The result is loaded into a copy of the `pristine` base; its method and tensor shapes must be the
    trainable's."""
    loaded = load_result(directory, copy.deepcopy(pristine))
    if loaded.method != trainable.method:
        raise InputError(f"--extend {directory} holds a {loaded.method} result; extend it with --method "
                         f"{loaded.method}")
    misfit = [k for k, p in trainable._named.items() if k not in loaded.state or loaded.state[k].shape != p.shape]
    if misfit:
        raise InputError(f"--extend {directory}: its {loaded.method} result does not fit these settings "
                         f"({len(misfit)} of {len(trainable._named)} tensors differ, e.g. {misfit[0]!r}); extend it "
                         "with the settings it was trained with (e.g. the same --hidden or --lora-rank)")
    with torch.no_grad():
        for k, p in trainable._named.items():
            p.copy_(loaded.state[k])
    return loaded


__all__ = ["ADAPTER_SET_NAME", "REGISTRY", "Dial", "LoadedResult", "Method", "Trainable", "build", "get",
           "load_result", "warm_start"]
