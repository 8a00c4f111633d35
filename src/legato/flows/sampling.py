"""Sampling the digits flow: integrate dx/dt = v(x, t, y) from noise at t = 0 to an image at t = 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchdiffeq import odeint

from legato.errors import InputError

SOLVERS = ("euler", "midpoint", "rk4", "dopri5")


@dataclass
class SamplerConfig:
    """Defaults used for every number in docs/results/digits-flow.md: midpoint, 10 steps (20 UNet evaluations)."""

    method: str = "midpoint"
    steps: int = 10
    guidance: float = 1.0  # classifier-free guidance scale; 1 = the conditional model alone
    batch_size: int = 500


class _Velocity(nn.Module):
    def __init__(self, model: nn.Module, y: torch.Tensor, guidance: float) -> None:
        super().__init__()
        self.model, self.y, self.guidance = model, y, guidance
        self.null = torch.full_like(y, model.null_class)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.expand(x.shape[0])
        v = self.model(x, tt, self.y)
        if self.guidance != 1.0:
            v_null = self.model(x, tt, self.null)
            v = v_null + self.guidance * (v - v_null)
        return v


def noise_for(labels: torch.Tensor, seed: int, shape=(1, 16, 16)) -> torch.Tensor:
    """The starting noise: one fixed stream per seed, so the same (seed, labels) give the same images."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((len(labels), *shape), generator=gen)


@torch.no_grad()
def sample(
    model: nn.Module,
    labels: torch.Tensor | list[int],
    seed: int = 0,
    config: SamplerConfig | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images `[N, 1, 16, 16]` in [-1, 1] for class `labels` `[N]`, from noise drawn with `seed`."""
    cfg = config or SamplerConfig()
    if cfg.method not in SOLVERS:
        raise InputError(f"unknown sampler {cfg.method!r}; choose one of {', '.join(SOLVERS)}")
    if cfg.steps < 1:
        raise InputError(f"the sampler needs at least one step (got {cfg.steps})")
    labels = torch.as_tensor(labels, dtype=torch.long)
    x0 = noise if noise is not None else noise_for(labels, seed)
    was = model.training
    model.eval()
    out = []
    grid = torch.linspace(0.0, 1.0, cfg.steps + 1)
    options = {} if cfg.method != "dopri5" else {"rtol": 1e-4, "atol": 1e-4}
    for i in range(0, len(labels), cfg.batch_size):
        field = _Velocity(model, labels[i : i + cfg.batch_size], cfg.guidance)
        ts = grid if cfg.method != "dopri5" else grid[[0, -1]]
        out.append(odeint(field, x0[i : i + cfg.batch_size], ts, method=cfg.method, **options)[-1])
    model.train(was)
    return torch.cat(out).clamp(-1.0, 1.0)


def class_labels(per_class: int, classes: list[int] | range = range(10)) -> torch.Tensor:
    """`[c0]*n + [c1]*n + …` for the given classes."""
    return torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
