"""Train the toy generator directly with the trainer (test helper): the frozen source, the latent to forget
and its target, the identity model and the perceptual loss set up the same way for every trainer test."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from legato.generators import load
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.losses import make_perceptual
from legato.unlearning.methods import build
from legato.unlearning.targets import ufo_target
from legato.unlearning.trainer import train


def train_toy(config: UnlearnConfig, work: Path, latent_seed: int, people: int = 1, **train_options):
    """Returns (trainable, TrainResult) after `train` on the toy generator, one torch thread; `people` latents
    to forget, drawn from `latent_seed`."""
    torch.set_num_threads(1)
    gen = load("toy")
    source = copy.deepcopy(gen)
    for p in source.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        ws_u = source.mapping(torch.randn(people, source.z_dim, generator=torch.Generator().manual_seed(latent_seed)))
    ws_t = ufo_target(ws_u, source.w_avg, config.target, 1.0)
    identity_model = source.identity_model()
    trainable = build(gen, config)
    result = train(source, trainable, ws_u, ws_t, config, identity_model=identity_model,
                   perceptual=make_perceptual("identity-features", identity_model), alpha_max=0.5, work=work,
                   progress=False, **train_options)
    return trainable, result
