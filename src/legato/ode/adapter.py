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
    """Adapts f(x) to torchdiffeq's f(t, x) and counts evaluations; a gated field is switched by the
    openness of the current solve (its condition is constant in t, so the gate is computed once a solve)."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.nfe = 0
        self.openness: torch.Tensor | None = None

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        if self.openness is not None:
            return self.field.switched(x, self.openness)
        return self.field(x)


class ODEAdapter(nn.Module):
    """A Neural-ODE adapter on a feature map of `channels` channels.

    Defaults follow the LEGATO reference code: the 1×1-conv field with 256 hidden channels, integrated over
    [0, 1.6] with Euler steps of 0.4 (4 steps). `strength` ∈ [0, 1] scales the time span, so 0 is the
    identity and 1 the trained adapter.

    While gradients are enabled (or when `record_trajectory` is True) each call records, for the
    trajectory-consistency term, mean((x_{k+1} − x_k)²) per solver step k and per sample: a `[steps, batch]`
    tensor per call, read by `consume_trajectory_terms()`.
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
        condition_dim: int | None = None,
        gate_hidden: int | None = None,
        gate_keys: int = 0,
        gate_space: str = "latent",
        gate_rank: int = 0,
        gate_floor: float = 0.0,
        gate_map_hidden: int = 0,
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
        self.func = _Autonomous(make_field(field, channels, hidden, condition_dim, gate_hidden, gate_keys,
                                           gate_space, gate_rank, gate_floor, gate_map_hidden))
        # a conditioned field (the gated and keyed ones) reads a per-sample vector (the latent) beside the state
        self.conditioned = bool(getattr(self.func.field, "conditioned", False))
        self.strength = 1.0
        self.record_trajectory: bool | None = None  # None: record only while gradients are enabled
        self._terms: list[torch.Tensor] = []
        self._conditions: list[torch.Tensor] = []  # a conditioned field's conditions per call, `[batch, dim]`
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

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if self.strength <= 0:
            self.last_num_steps = 0
            return x
        if self.conditioned:
            dim = self.func.field.condition_dim
            if not isinstance(condition, torch.Tensor) or condition.shape != (x.shape[0], dim):
                got = tuple(condition.shape) if isinstance(condition, torch.Tensor) else type(condition).__name__
                raise InputError(f"the {self.field_name} field needs a condition of shape [{x.shape[0]}, {dim}] "
                                 f"(the latent at its site), got {got}")
        # a strided feature map (diffusers' attention blocks return channels-last strides) crashes GroupNorm's
        # CPU backward in torch 2.13 (a segfault, not an error): the ODE works on a contiguous copy
        x = x.contiguous()
        squeeze = x.dim() == 2  # [B, C] features, e.g. after a linear layer
        if squeeze:
            x = x[:, :, None, None]
        grid = self.time_grid()
        t = torch.tensor(grid, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
        options = {"rtol": self.rtol, "atol": self.atol} if self.method in ADAPTIVE_METHODS else {}
        self.func.openness = self.func.field.openness(condition) if self.conditioned else None
        try:
            states = odeint(self.func, x, t, method=self.method, **options)
        finally:
            self.func.openness = None
        self.last_num_steps = len(grid) - 1
        record = self.record_trajectory if self.record_trajectory is not None else torch.is_grad_enabled()
        if record:
            diffs = states[1:] - states[:-1]  # [steps, B, C, H, W]
            self._terms.append(diffs.pow(2).flatten(2).mean(dim=2))
            if self.conditioned and getattr(self.func.field, "records_conditions", True):
                self._conditions.append(condition.detach())
        out = states[-1]
        return out[:, :, 0, 0] if squeeze else out

    def consume_conditions(self) -> list[torch.Tensor]:
        """Return and clear the `[batch, dim]` conditions a conditioned field was given since the last call."""
        conditions, self._conditions = self._conditions, []
        return conditions

    def consume_trajectory_terms(self) -> list[torch.Tensor]:
        """Return and clear the `[steps, batch]` terms recorded since the last call (one per forward)."""
        terms, self._terms = self._terms, []
        return terms

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden={self.hidden}, field={self.field_name}, t_end={self.t_end}, "
            f"step_size={self.step_size}, method={self.method}, strength={self.strength}"
        )


TRAJECTORY_MODES = ("all", "reference")


def trajectory_consistency(adapters, mode: str = "all", site_index: int = -2, row: int | None = 0) -> torch.Tensor:
    """The trajectory-consistency term from what the adapters recorded since the last consumption (cleared).

    `adapters` is an iterable of `ODEAdapter` (an `AdapterSet` works).
    - "all" (ours): the mean over adapters, their calls, solver steps and samples of mean((x_{k+1} − x_k)²).
    - "reference" (the LEGATO code): one adapter, `adapters[site_index]` (EG3D's b128 is the second-to-last
      of b8…b256), one sample, `row` of its first recorded call (the forgotten latent), and the step terms
      c_1…c_S weighted 1/S each plus c_S once more: the code's loop overwrites its running total with the
      last c_S and then adds the mean, which gives 0.25·(c₁+c₂+c₃) + 1.25·c₄ for its 4 Euler steps.
      `row=None` (a forward that did not hold the forgotten latent) gives 0.
    """
    if mode not in TRAJECTORY_MODES:
        raise InputError(f"unknown trajectory mode {mode!r}; choose one of {', '.join(TRAJECTORY_MODES)}")
    recorded = [adapter.consume_trajectory_terms() for adapter in adapters]
    device = next((t[0].device for t in recorded if t), None)
    if mode == "reference":
        terms = recorded[site_index] if recorded else []
        if not terms or row is None:
            return torch.zeros((), device=device)
        steps = terms[0][:, row]  # [S]
        return steps.mean() + steps[-1]
    per_adapter = [torch.cat([t.flatten() for t in terms]).mean() for terms in recorded if terms]
    if not per_adapter:
        return torch.zeros((), device=device)
    return torch.stack(per_adapter).mean()
