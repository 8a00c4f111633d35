"""The identity and embedding spaces of the keyed gate (`--field keyed --gate-space identity|embedding`).

A latent holds more than who a face is: on SynthFaces the expression, light and background of a photo, on
EG3D and StyleGAN2 the same and more. A person's other photos differ from the forgotten one in exactly
those, and after inversion some of them sit as far from it in the standardised latent as strangers do
(`benchmarks/gate_reach.py`), so a gate on that distance cannot open for them without opening for
strangers. The identity model can tell those photos apart, but it needs the image, and the gate must
decide before the image exists. So the gate measures distance after a linear map of the latent fitted to
the identity model:

1. `n` seeded latents from the model's mapping are rendered at one view and embedded by the identity model;
2. ridge regression predicts the (unit) embedding from the standardised latent ŵ;
3. the map's top `rank` directions (its SVD, singular values kept) become the projection, scaled so that a
   random pair of latents is as far apart per coordinate as in ŵ (the radius keeps its meaning).

Measured on SynthFaces (3,000 latents, docs/results/many-history.md): the prediction's held-out cosine with the true
embedding is 0.75; the demo person's four other photos sit at cosine 0.66–0.83 from the forgotten one in
this space and strangers at 0.04 ± 0.25 (none above the least similar photo), where in ŵ two of the photos
sat at 0.04–0.05 with 41% of strangers above them.

The linear map is the weak link: at 0.75–0.78 held-out cosine it places some strangers as near the forgotten
person as the person's own other photos, and the gate then changes those strangers too (on person
1,000,100, two of 32 random people lost their identity). `--gate-space embedding` replaces it by a small
MLP fitted to the same renders (1 − cosine to the unit embedding), which predicts the embedding at 0.97;
the gate then measures the distance between the predicted unit embeddings (`ode.fields.KeyedField`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from legato.errors import InputError
from legato.ode.fields import EMBEDDING_MAP, embedding_map_forward

FIT_LATENTS = 2048  # latents rendered to fit the map (SynthFaces: a few seconds)
RANK = 32  # directions kept
RIDGE = 10.0  # the regression's penalty, in units of the (standardised) latents' sum of squares
# the embedding space's MLP (SynthFaces, 2,048 latents: held-out cosine 0.966 at width 128, 0.959 at 64,
# 0.969 at 256; the linear map: 0.777)
MAP_HIDDEN = 128
MAP_STEPS = 2000
MAP_BATCH = 256
MAP_LR = 1e-3


def _cache_key(model, identity_model, center, scale, camera, **settings) -> dict | None:
    """What a fitted map depends on (both models' weights, the standardisation, the view, the settings), or
    None when the identity model has no weights to fingerprint (then the map is fitted every time)."""
    from torch import nn

    from legato.ode.fingerprint import fingerprint
    from legato.tensor_cache import tensor_digest

    inner = getattr(identity_model, "model", identity_model)
    if not isinstance(model, nn.Module) or not isinstance(inner, nn.Module):
        return None
    return {"model": fingerprint(model), "identity_model": fingerprint(inner),
            "identity_name": str(getattr(identity_model, "name", type(identity_model).__name__)),
            "inputs": tensor_digest(center, scale, camera), "device": str(center.device), **settings}


def _cached_fit(name: str, key: dict | None, compute):
    from legato.tensor_cache import cached

    if key is None:
        return compute()
    return cached("gate-maps", name, key, compute)


@torch.no_grad()
def _fit_data(model, identity_model, center: torch.Tensor, scale: torch.Tensor, camera: torch.Tensor, n: int,
              seed: int, batch: int, space: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` seeded latents of `model`, standardised `[n, D]`, and their renders' unit embeddings `[n, E]`."""
    if identity_model is None:
        raise InputError(f"--gate-space {space} fits the gate to an identity model, and this run has none "
                         "(give --identity-model)")
    mapping, z_dim = getattr(model, "mapping", None), getattr(model, "z_dim", None)
    if not callable(mapping) or not isinstance(z_dim, int):
        raise InputError(f"--gate-space {space} needs a generator with a mapping network (z → w)")
    g = torch.Generator().manual_seed(seed)
    latents, embeddings = [], []
    for a in range(0, n, batch):
        z = torch.randn(min(batch, n - a), z_dim, generator=g).to(center.device)
        ws = mapping(z)
        images = model.synthesis(ws, camera.expand(ws.shape[0], -1))
        latents.append((ws[:, 0] if ws.dim() == 3 else ws).float())
        embeddings.append(F.normalize(identity_model.embed(images).float(), dim=1))
    return (torch.cat(latents) - center.float()) / scale.float(), torch.cat(embeddings)


def identity_projection(model, identity_model, center: torch.Tensor, scale: torch.Tensor, camera: torch.Tensor,
                        n: int = FIT_LATENTS, rank: int = RANK, seed: int = 0, batch: int = 64) -> torch.Tensor:
    """The map `[D, rank]` from standardised latents ((w − center) / scale) into the identity space, fitted on
    `n` seeded latents of `model` (its `mapping` and `synthesis`) rendered at `camera` `[1, c]`. The map is
    kept in `$LEGATO_CACHE/gate-maps/` for the next run on the same models (`legato.tensor_cache`)."""
    key = _cache_key(model, identity_model, center, scale, camera, n=n, rank=rank, seed=seed, batch=batch)
    return _cached_fit("identity-projection", key, lambda: {"projection": _fit_identity_projection(
        model, identity_model, center, scale, camera, n, rank, seed, batch)})["projection"].to(center)


def _fit_identity_projection(model, identity_model, center, scale, camera, n, rank, seed, batch) -> torch.Tensor:
    x, y = _fit_data(model, identity_model, center, scale, camera, n, seed, batch, "identity")
    x = x - x.mean(0)
    y = y - y.mean(0)
    d = x.shape[1]
    weights = torch.linalg.solve(x.T @ x + RIDGE * torch.eye(d, device=x.device), x.T @ y)  # [D, E]
    u, s, _ = torch.linalg.svd(weights, full_matrices=False)
    k = min(rank, s.shape[0])
    projection = u[:, :k] * s[:k]
    # a random pair: as far apart per coordinate in the identity space as in ŵ
    half = x.shape[0] // 2
    diff = x[:half] - x[half:2 * half]
    per_coordinate = diff.pow(2).sum(1).mean() / d
    projected = (diff @ projection).pow(2).sum(1).mean() / k
    return (projection * (per_coordinate / projected.clamp_min(1e-12)).sqrt()).to(center)


def embedding_map(model, identity_model, center: torch.Tensor, scale: torch.Tensor, camera: torch.Tensor,
                  n: int = FIT_LATENTS, hidden: int = MAP_HIDDEN, steps: int = MAP_STEPS, seed: int = 0,
                  batch: int = 64) -> dict[str, torch.Tensor]:
    """The embedding space's predictor (`ode.fields.EMBEDDING_MAP`): an MLP from standardised latents to the
    identity model's unit embedding of their renders, fitted on `n` seeded latents of `model` rendered at
    `camera` `[1, c]` by `steps` Adam steps on 1 − cosine. Seeded throughout, so a resumed or extended run
    fits the same map from the same latents; kept in `$LEGATO_CACHE/gate-maps/` for the next run on the same
    models."""
    key = _cache_key(model, identity_model, center, scale, camera, n=n, hidden=hidden, steps=steps, seed=seed,
                     batch=batch)
    fitted = _cached_fit("embedding-map", key, lambda: _fit_embedding_map(
        model, identity_model, center, scale, camera, n, hidden, steps, seed, batch))
    return {name: fitted[name].to(center) for name in EMBEDDING_MAP}


def _fit_embedding_map(model, identity_model, center, scale, camera, n, hidden, steps, seed,
                       batch) -> dict[str, torch.Tensor]:
    x, y = _fit_data(model, identity_model, center, scale, camera, n, seed, batch, "embedding")
    g = torch.Generator().manual_seed(seed)
    d, e = x.shape[1], y.shape[1]
    layers = [(d, hidden), (hidden, hidden), (hidden, e)]
    params = []
    for fan_in, fan_out in layers:  # PyTorch's Linear initialisation, drawn from the seeded generator
        bound = 1.0 / math.sqrt(fan_in)
        # drawn on the CPU (the same numbers on every device), trained where the renders are
        params.append(((torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound).to(x.device).requires_grad_())
        params.append(((torch.rand(fan_out, generator=g) * 2 - 1) * bound).to(x.device).requires_grad_())
    tensors = dict(zip(EMBEDDING_MAP, params, strict=True))
    opt = torch.optim.Adam(params, lr=MAP_LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    per_batch = min(MAP_BATCH, x.shape[0])
    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(0, x.shape[0], (per_batch,), generator=g).to(x.device)
            loss = (1 - F.cosine_similarity(embedding_map_forward(tensors, x[rows]), y[rows], dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    return {name: p.detach().to(center) for name, p in tensors.items()}
