"""Grow a trained SynthFaces generator into a wider one that computes exactly the same images.

Used by the generator recipe's third cycle: rather than learn layout, skin and hair again from scratch,
the cycle-2 network is widened (more channels at 32² and 64²) and given coordinate channels, and training
continues on the details. Function-preserving (as Net2Net's widening, with zeros instead of copies):
- a modulated conv's old output rows keep their old weights; their columns for new input channels
  (new features of the layer below, or the coordinate channels) start at zero, so they ignore them;
- new output rows are freshly initialised, so new features are non-zero and the zero columns above them
  get gradients at once;
- the weight gain 1/√fan_in changes with the fan-in: copied weights are rescaled by gain_old / gain_new,
  which leaves demodulated layers unchanged (scale-free) and keeps ToRGB (not demodulated) exact.
"""

from __future__ import annotations

import copy

import torch

from legato.synthfaces.generator import GeneratorConfig, ModulatedConv, SynthFacesGenerator


def _grow_conv(old: ModulatedConv, new: ModulatedConv) -> None:
    out_old, in_old = old.out_channels, old.in_channels
    if new.out_channels < out_old or new.in_channels < in_old:
        raise ValueError(f"cannot shrink a layer ({old} → {new})")
    if old.coords and not new.coords:
        raise ValueError("cannot remove coordinate channels from a layer")
    scale = old.gain / new.gain
    with torch.no_grad():
        new.weight[:out_old].zero_()
        new.weight[:out_old, :in_old] = old.weight[:, :in_old] * scale
        if old.coords:  # old coordinate columns sit after the old channels; in the new layer after the new ones
            new.weight[:out_old, new.in_channels:] = old.weight[:, in_old:] * scale
            new.affine.weight[new.in_channels:] = old.affine.weight[in_old:]
            new.affine.bias[new.in_channels:] = old.affine.bias[in_old:]
        new.bias[:out_old] = old.bias
        new.affine.weight[:in_old] = old.affine.weight[:in_old]
        new.affine.bias[:in_old] = old.affine.bias[:in_old]


def grow_generator(old: SynthFacesGenerator, config: GeneratorConfig, seed: int = 0) -> SynthFacesGenerator:
    """A generator with `config` (channels ≥ the old ones) whose images equal `old`'s at initialisation."""
    for key in ("z_dim", "w_dim", "c_dim", "mapping_layers", "resolution", "camera_features"):
        if getattr(old.config, key) != getattr(config, key):
            raise ValueError(f"growing cannot change {key} ({getattr(old.config, key)} → {getattr(config, key)})")
    torch.manual_seed(seed)
    new = SynthFacesGenerator(copy.deepcopy(config))
    old_modules = dict(old.named_modules())
    with torch.no_grad():
        for name, module in new.named_modules():
            if isinstance(module, ModulatedConv):
                _grow_conv(old_modules[name], module)
        new_params = dict(new.named_parameters())
        grown = {n for n, m in new.named_modules() if isinstance(m, ModulatedConv)}
        for name, p in old.named_parameters():
            if name.rsplit(".", 2)[0] in grown or name.rsplit(".", 1)[0] in grown:
                continue
            if new_params[name].shape != p.shape:
                raise ValueError(f"{name}: {tuple(p.shape)} → {tuple(new_params[name].shape)} cannot be grown")
            new_params[name].copy_(p)
        new.w_average.copy_(old.w_average)
    return new
