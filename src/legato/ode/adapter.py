"""`ODEAdapter`: x ↦ the state at time strength·t_end of dx/dt = f(x), solved with torchdiffeq."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchdiffeq import odeint

from legato.errors import InputError
from legato.ode.fields import make_field

FIXED_STEP_METHODS = ("euler", "midpoint", "rk4")
ADAPTIVE_METHODS = ("dopri5",)


class _Autonomous(nn.Module):
    """Adapts f(x) to torchdiffeq's f(t, x) and counts evaluations."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.field(x)


class ODEAdapter(nn.Module):
    """A Neural-ODE adapter on a feature map of `channels` channels.

    Defaults follow the LEGATO reference code: the 1×1-conv field with 256 hidden channels, integrated over
    [0, 1.6] with Euler steps of 0.4 (4 steps). `strength` ∈ [0, 1] scales the time span, so 0 is the
    identity and 1 the trained adapter.

    While gradients are enabled (or when `record_trajectory` is True) each call records the
    trajectory-consistency term mean_k mean((x_{k+1} − x_k)²) for `consume_trajectory_terms()`.
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 256,
        field: str = "conv1x1",
        t_end: float = 1.6,
        step_size: float = 0.4,
        method: str = "euler",
        rtol: float = 1e-3,
        atol: float = 1e-4,
    ) -> None:
        super().__init__()
        if method not in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
            raise InputError(
                f"unknown ODE solver {method!r}; choose one of {', '.join(FIXED_STEP_METHODS + ADAPTIVE_METHODS)}"
            )
        if t_end <= 0 or step_size <= 0:
            raise InputError(f"t_end and step_size must be positive (got {t_end}, {step_size})")
        self.channels, self.hidden, self.field_name = channels, hidden, field
        self.t_end, self.step_size, self.method = float(t_end), float(step_size), method
        self.rtol, self.atol = rtol, atol
        self.func = _Autonomous(make_field(field, channels, hidden))
        self.strength = 1.0
        self.record_trajectory: bool | None = None  # None: record only while gradients are enabled
        self._terms: list[torch.Tensor] = []
        self.last_num_steps = 0

    @property
    def field(self) -> nn.Module:
        return self.func.field

    @property
    def nfe(self) -> int:
        """Number of field evaluations since construction (or since `nfe` was reset via `reset_nfe`)."""
        return self.func.nfe

    def reset_nfe(self) -> None:
        self.func.nfe = 0

    def time_grid(self, strength: float | None = None) -> list[float]:
        """Time points the solver steps through: 0, h, 2h, …, strength·t_end (last step may be shorter)."""
        s = self.strength if strength is None else strength
        t1 = float(s) * self.t_end
        if t1 <= 0:
            return [0.0]
        if self.method in ADAPTIVE_METHODS:
            return [0.0, t1]
        n = max(1, math.ceil(t1 / self.step_size - 1e-9))
        grid = [min(k * self.step_size, t1) for k in range(n)] + [t1]
        return grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strength <= 0:
            self.last_num_steps = 0
            return x
        squeeze = x.dim() == 2  # [B, C] features, e.g. after a linear layer
        if squeeze:
            x = x[:, :, None, None]
        grid = self.time_grid()
        t = torch.tensor(grid, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
        options = {"rtol": self.rtol, "atol": self.atol} if self.method in ADAPTIVE_METHODS else {}
        states = odeint(self.func, x, t, method=self.method, **options)
        self.last_num_steps = len(grid) - 1
        record = self.record_trajectory if self.record_trajectory is not None else torch.is_grad_enabled()
        if record:
            diffs = states[1:] - states[:-1]
            self._terms.append(diffs.pow(2).flatten(1).mean(dim=1).mean())
        out = states[-1]
        return out[:, :, 0, 0] if squeeze else out

    def consume_trajectory_terms(self) -> list[torch.Tensor]:
        """Return and clear the trajectory-consistency terms recorded since the last call."""
        terms, self._terms = self._terms, []
        return terms

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden={self.hidden}, field={self.field_name}, t_end={self.t_end}, "
            f"step_size={self.step_size}, method={self.method}, strength={self.strength}"
        )


def trajectory_consistency(adapters, single: bool = False) -> torch.Tensor:
    """Mean over adapters (and their calls since the last consumption) of mean_k mean((x_{k+1} − x_k)²).

    `adapters` is an iterable of `ODEAdapter` (an `AdapterSet` works). Clears what it reads.
    `single=True` reproduces the reference code, which only kept the term of the last adapter it visited.
    """
    per_adapter = []
    device = None
    for adapter in adapters:
        terms = adapter.consume_trajectory_terms()
        if terms:
            per_adapter.append(torch.stack(terms).mean())
            device = terms[0].device
    if not per_adapter:
        return torch.zeros((), device=device)
    if single:
        return per_adapter[-1]
    return torch.stack(per_adapter).mean()
