"""The identity space of the keyed gate (`--field keyed --gate-space identity`).

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

Measured on SynthFaces (3,000 latents, docs/many.md): the prediction's held-out cosine with the true
embedding is 0.75; the demo person's four other photos sit at cosine 0.66–0.83 from the forgotten one in
this space and strangers at 0.04 ± 0.25 (none above the least similar photo), where in ŵ two of the photos
sat at 0.04–0.05 with 41% of strangers above them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from legato.errors import InputError

FIT_LATENTS = 2048  # latents rendered to fit the map (SynthFaces: a few seconds)
RANK = 32  # directions kept
RIDGE = 10.0  # the regression's penalty, in units of the (standardised) latents' sum of squares


@torch.no_grad()
def identity_projection(model, identity_model, center: torch.Tensor, scale: torch.Tensor, camera: torch.Tensor,
                        n: int = FIT_LATENTS, rank: int = RANK, seed: int = 0, batch: int = 64) -> torch.Tensor:
    """The map `[D, rank]` from standardised latents ((w − center) / scale) into the identity space, fitted on
    `n` seeded latents of `model` (its `mapping` and `synthesis`) rendered at `camera` `[1, c]`."""
    if identity_model is None:
        raise InputError("--gate-space identity fits the gate to an identity model, and this run has none "
                         "(give --identity-model)")
    mapping, z_dim = getattr(model, "mapping", None), getattr(model, "z_dim", None)
    if not callable(mapping) or not isinstance(z_dim, int):
        raise InputError("--gate-space identity needs a generator with a mapping network (z → w)")
    g = torch.Generator().manual_seed(seed)
    latents, embeddings = [], []
    for a in range(0, n, batch):
        z = torch.randn(min(batch, n - a), z_dim, generator=g).to(center.device)
        ws = mapping(z)
        images = model.synthesis(ws, camera.expand(ws.shape[0], -1))
        latents.append((ws[:, 0] if ws.dim() == 3 else ws).float())
        embeddings.append(F.normalize(identity_model.embed(images).float(), dim=1))
    x = (torch.cat(latents) - center.float()) / scale.float()
    y = torch.cat(embeddings)
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
