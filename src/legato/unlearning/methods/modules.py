"""The methods on a model that is not a GAN: ODE adapters at named blocks, full fine-tuning and PEFT LoRA for
the diffusion/flow UNets (the digits flow, lfw-faces), each a `Trainable` with its dial, as the GAN methods'
registry builds them (`methods.REGISTRY`). A backend picks the blocks and saves the result in its format;
what trains and how its strength turns is the same everywhere:

| method | trains | dial |
|---|---|---|
| `legato` | Neural-ODE adapters after the named blocks, model frozen | the ODE's time span (the adapter set) |
| `residual` | the same field applied once, x + f(x) | the output scale (the adapter set) |
| fine-tuning | every weight of the model (or of a copy) | `WeightInterpolation`: θ₀ + s·(θ₁ − θ₀) |
| `lora` | PEFT LoRA on the named modules | `PeftLoraScale`: PEFT's scale |
"""

from __future__ import annotations

import copy

from torch import nn

from legato.unlearning.methods.adapters import adapter_parameters
from legato.unlearning.methods.base import ADAPTER_SET_NAME, Trainable
from legato.unlearning.methods.dials import PeftLoraScale, WeightInterpolation

ADAPTER_METHODS = ("legato", "residual")


def ode_adapters(model: nn.Module, method: str, sites: list[str], channels: dict[str, int], *, hidden: int,
                 t_end: float, step_size: float, solver: str, field: str = "unet",
                 condition_dim: int | None = None, name: str = ADAPTER_SET_NAME) -> Trainable:
    """`legato` (the ODE over [0, t_end]) or `residual` (one Euler step of length 1: x + f(x)) adapters
    attached to `model` at `sites`; the adapter set is the dial and is saved as an adapter bundle."""
    from legato.ode import attach, save_bundle

    if method not in ADAPTER_METHODS:
        raise ValueError(f"not an adapter method: {method!r}")
    ode = (dict(t_end=t_end, step_size=step_size, method=solver) if method == "legato"
           else dict(t_end=1.0, step_size=1.0, method="euler"))
    adapter_set = attach(model, list(sites), name=name, channels=channels, hidden=hidden, field=field,
                         condition_dim=condition_dim, **ode)
    named = adapter_parameters(adapter_set)
    return Trainable(method, model, list(named.values()), adapter_set=adapter_set, dial=adapter_set,
                     uses_trajectory=method == "legato", _named=named,
                     save_fn=lambda directory, metadata: save_bundle(adapter_set, directory, metadata=metadata))


def full_finetune(model: nn.Module, method: str, *, copy_model: bool) -> Trainable:
    """Every weight of `model` trains (of a deep copy with `copy_model`, so `model` stays the source); the
    dial interpolates from the source's weights to the trained ones (captured by `dial.capture()`, or at
    the first turn of the dial)."""
    source = dict(model.named_parameters())  # the dial keeps its own copy of these
    unlearned = copy.deepcopy(model) if copy_model else model
    if copy_model:
        model.requires_grad_(False)
    unlearned.requires_grad_(True)
    named = dict(unlearned.named_parameters())
    return Trainable(method, unlearned, list(named.values()), dial=WeightInterpolation(named, source), _named=named)


def peft_lora(model: nn.Module, targets: list[str], rank: int, alpha: float | None = None) -> Trainable:
    """PEFT LoRA of rank `rank` injected into `model`'s `targets` (B = 0 at the start, so the model starts as
    the source); only the LoRA tensors train; the dial is PEFT's scale."""
    from peft import LoraConfig, inject_adapter_in_model

    from legato.ode.fingerprint import fingerprint

    base = fingerprint(model)  # before the injection renames the weights
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha,
                                       target_modules=list(targets), init_lora_weights=True), model)
    named = {n: p for n, p in model.named_parameters() if "lora_" in n}
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    trainable = Trainable("lora", model, list(named.values()), dial=PeftLoraScale(model), _named=named)
    trainable.save_fn = lambda directory, metadata: save_peft_lora(trainable, directory, base, metadata)
    return trainable


PEFT_FORMAT = "peft"  # `adapter_config.json`'s "format" for LoRA injected by PEFT (the GANs' own LoRA has none)


def save_peft_lora(trainable: Trainable, directory, base_fingerprint: str, metadata: dict) -> None:
    """`peft_lora`'s result as a PEFT-shaped folder: `adapter_model.safetensors` (PEFT's state dict) and
    `adapter_config.json` (rank, alpha, the full names of the injected modules, the base's fingerprint)."""
    import json
    from pathlib import Path

    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from legato.unlearning.methods.base import BUNDLE_CONFIG

    model = trainable.unlearned
    config = model.peft_config["default"]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(state, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    (directory / BUNDLE_CONFIG).write_text(json.dumps(
        {"peft_type": "LORA", "format": PEFT_FORMAT, "r": config.r, "lora_alpha": config.lora_alpha,
         "target_modules": sorted(config.target_modules), "base_model_fingerprint": base_fingerprint,
         "metadata": metadata}, indent=2) + "\n")


def holds_peft_lora(directory) -> bool:
    from legato.unlearning.methods.base import bundle_config_value

    return bundle_config_value(directory, "format") == PEFT_FORMAT


def load_peft_lora(directory, model: nn.Module) -> PeftLoraScale:
    """Inject the LoRA of a `save_peft_lora` folder into `model` (refused on other base weights); returns
    its dial."""
    import json
    from pathlib import Path

    import torch
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from legato.errors import CheckpointError
    from legato.ode.fingerprint import fingerprint
    from legato.unlearning.methods.base import BUNDLE_CONFIG

    directory = Path(directory)
    try:
        config = json.loads((directory / BUNDLE_CONFIG).read_text())
        tensors = load_file(str(directory / "adapter_model.safetensors"))
        rank, alpha, targets = int(config["r"]), float(config["lora_alpha"]), list(config["target_modules"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, SafetensorError) as e:
        raise CheckpointError(f"cannot read the LoRA folder {directory}: {e}") from e
    expected, actual = config.get("base_model_fingerprint"), fingerprint(model)
    if expected != actual:
        raise CheckpointError(f"LoRA folder {directory} was trained on other base weights (fingerprint {expected}, "
                              f"this model is {actual}); load the model it was made for")
    missing = [t for t in targets if t not in dict(model.named_modules())]
    if missing:
        raise CheckpointError(f"LoRA folder {directory} targets modules this model lacks: {missing[:3]}")
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise CheckpointError(f"LoRA folder {directory} holds NaN or inf")
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets), model)
    result = set_peft_model_state_dict(model, tensors)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise CheckpointError(f"LoRA folder {directory}: tensors that fit no injected module: {unexpected[:3]}")
    model.requires_grad_(False)
    return PeftLoraScale(model)
