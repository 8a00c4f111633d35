"""The strength dials of results that are not an adapter set (`AdapterSet` is its own dial), shared by every
backend: the same `Dial` (a `strength` in [0, 1] and an `enabled` switch) for the interpolated weights of a
fine-tuning or an embedding edit, for PEFT's LoRA layers, and for several dials turned together.

- `WeightInterpolation`: θ(s) = θ₀ + s·(θ₁ − θ₀) over named parameters (θ₀ the source's, θ₁ the result's);
- `PeftLoraScale`: PEFT's `set_scale` on every LoRA layer of a model (the image `lora` method's own
  parametrized updates are their own dial, `methods.lora.LoRASet`);
- `DialGroup`: one strength for several dials (every adapter set on a model, say);
- `ScaledDial`: what those with one scale share (the GANs' LoRA set, `methods.lora.LoRASet`, is one too).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from legato.ode.adapter_set import checked_strength
from legato.ode.strength_map import StrengthMap, mapped


class ScaledDial:
    """A dial whose effect is one scale: `strength` when enabled, 0 when not; a subclass applies it
    (`_apply`) whenever either changes."""

    def __init__(self) -> None:
        self._strength, self._enabled = 1.0, True
        self._strength_map: StrengthMap | None = None

    def _apply(self, scale: float) -> None:
        raise NotImplementedError

    def _update(self) -> None:
        self._apply(mapped(self._strength_map, self._strength) if self._enabled else 0.0)

    @property
    def strength_map(self) -> StrengthMap | None:
        """What `strength` turns the scale to (None: the strength itself; `legato.ode.strength_map`)."""
        return self._strength_map

    @strength_map.setter
    def strength_map(self, value: StrengthMap | None) -> None:
        self._strength_map = value
        self._update()

    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._strength = checked_strength(value)
        self._update()

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self._update()


class WeightInterpolation(ScaledDial):
    """The dial of changed weights: strength s puts θ₀ + s·(θ₁ − θ₀) into each parameter. θ₁ is read by
    `capture()` (after training) or given; until then the parameters are whatever training made them."""

    def __init__(self, params: dict[str, nn.Parameter], source: dict[str, torch.Tensor],
                 tuned: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        missing = sorted(set(params) - set(source))
        if missing:
            raise ValueError(f"no source tensor for {missing[:3]}")
        self.params = dict(params)
        self.source = {k: source[k].detach().clone() for k in self.params}
        self.tuned = None if tuned is None else {k: tuned[k].detach().clone() for k in self.params}

    @classmethod
    def of_changed(cls, model: nn.Module, source: dict[str, torch.Tensor]) -> WeightInterpolation:
        """The dial of `model`'s parameters that differ from `source` (a loaded fine-tuning or row edit)."""
        params = {k: p for k, p in model.named_parameters() if k in source and not torch.equal(p, source[k])}
        return cls(params, source, tuned={k: p.detach() for k, p in params.items()})

    def capture(self) -> None:
        """Take the parameters as they are now as the result (strength 1)."""
        self.tuned = {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def _apply(self, scale: float) -> None:
        if self.tuned is None:
            self.capture()
        for k, p in self.params.items():
            p.copy_(self.source[k] + scale * (self.tuned[k] - self.source[k]))


class PeftLoraScale(ScaledDial):
    """PEFT LoRA layers' scale as the dial: strength s scales every update B·A of `model` by s."""

    def __init__(self, model: nn.Module, adapter_name: str = "default") -> None:
        from peft.tuners.lora import LoraLayer

        super().__init__()
        self.layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        if not self.layers:
            raise ValueError("the model has no PEFT LoRA layer")
        self.adapter_name = adapter_name

    def _apply(self, scale: float) -> None:
        for layer in self.layers:
            layer.set_scale(self.adapter_name, scale)


class DialGroup:
    """Several dials turned as one."""

    def __init__(self, dials: Iterable) -> None:
        self.dials = list(dials)
        if not self.dials:
            raise ValueError("a dial group needs at least one dial")

    @property
    def strength(self) -> float:
        return self.dials[0].strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = checked_strength(value)
        for d in self.dials:
            d.strength = value

    @property
    def enabled(self) -> bool:
        return self.dials[0].enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        for d in self.dials:
            d.enabled = value
