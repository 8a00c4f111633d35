"""The reference code's structure as named settings: summed terms, its trajectory term, continuous yaw."""

import json

import pytest
import torch

from _unlearning_toy import train_toy
from legato.errors import InputError
from legato.generators import load
from legato.unlearning.config import PRESETS, UnlearnConfig


def _log(tmp_path, name, micro_batch=None, **overrides):
    config = UnlearnConfig(method="legato", iterations=3, lr=1e-2, hidden=8, seed=11, log_every=1, eval_every=100,
                           checkpoint_every=1, micro_batch=micro_batch, **overrides)
    config.validate()
    work = tmp_path / name
    work.mkdir()
    trainable, _ = train_toy(config, work, latent_seed=5)
    return [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()], trainable


def test_sum_reduction_adds_the_latents_terms_instead_of_averaging(tmp_path):
    mean, _ = _log(tmp_path, "mean")
    summed, _ = _log(tmp_path, "sum", reduction="sum")
    # the first step's losses come before any update: the same draws, 2 adjacency and 2 global latents
    assert summed[0]["adjacency"] == pytest.approx(2 * mean[0]["adjacency"], abs=2e-6)  # logs keep 6 decimals
    assert summed[0]["global"] == pytest.approx(2 * mean[0]["global"], abs=2e-6)
    assert summed[0]["local"] == pytest.approx(mean[0]["local"], abs=1e-6)
    # and micro-batching keeps the sums
    chunked, _ = _log(tmp_path, "sum-chunked", micro_batch=2, reduction="sum")
    for a, b in zip(summed, chunked, strict=True):
        for key in ("total", "adjacency", "global", "trajectory"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=2e-6), key


def test_reference_trajectory_term_is_the_same_in_chunks_and_differs_from_ours(tmp_path):
    ours, _ = _log(tmp_path, "all")
    ref, _ = _log(tmp_path, "ref", trajectory="reference")
    chunked, _ = _log(tmp_path, "ref-chunked", micro_batch=2, trajectory="reference")
    assert ref[-1]["trajectory"] > 0 and ref[-1]["trajectory"] != pytest.approx(ours[-1]["trajectory"], rel=1e-3)
    for a, b in zip(ref, chunked, strict=True):
        assert b["trajectory"] == pytest.approx(a["trajectory"], rel=1e-4, abs=1e-9)


def test_continuous_camera_draws_yaws_between_the_views(tmp_path, monkeypatch):
    seen = []
    gen = load("toy")
    real = type(gen).view_at

    def spy(self, u):
        seen.append(u)
        return real(self, u)

    monkeypatch.setattr(type(gen), "view_at", spy)
    _log(tmp_path, "cont", training_camera="continuous")
    assert len(seen) == 3 and all(0 <= u <= 1 for u in seen) and len(set(seen)) == 3
    ends = gen.views(11)
    assert torch.allclose(gen.view_at(0.25), ends[0] + 0.25 * (ends[-1] - ends[0]))


def test_preset_applies_over_the_backend_and_under_explicit_options():
    gen = load("toy")
    cfg = UnlearnConfig.for_generator(gen, preset="reference")
    for key, value in PRESETS["reference"].items():
        assert getattr(cfg, key) == value
    assert cfg.preset == "reference"
    assert UnlearnConfig.for_generator(gen, preset="reference", reduction="mean").reduction == "mean"
    assert UnlearnConfig.for_generator(gen).reduction == "mean"
    with pytest.raises(InputError, match="preset"):
        UnlearnConfig.for_generator(gen, preset="paper")
    with pytest.raises(InputError, match="reduction"):
        UnlearnConfig(reduction="median").validate()


def test_injected_draws_replace_the_runs_own_and_the_default_draws_are_unchanged(tmp_path):
    from legato.unlearning.trainer import IterationDraws, draw_iteration

    config = UnlearnConfig(method="legato", iterations=2, lr=1e-2, hidden=8, seed=11, log_every=1, eval_every=100,
                           checkpoint_every=100)
    gen = load("toy")
    # the draws the run would make itself, fed back through the seam: the same log
    rng = torch.Generator().manual_seed(config.seed)
    own = [draw_iteration(gen, config, rng, gen.views(11), 2, 2, 0.5) for _ in range(2)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    train_toy(config, tmp_path / "a", latent_seed=5)
    train_toy(config, tmp_path / "b", latent_seed=5, draws=lambda step: own[step - 1])
    logs = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in "ab"]
    for a, b in zip(*logs, strict=True):
        for key in ("total", "local", "adjacency", "global", "trajectory"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
    # other draws change the adjacency term but not the local one at the first step (the global term is 0
    # there: new adapters are the identity)
    other = IterationDraws(own[0].camera, torch.randn(4, gen.z_dim, generator=torch.Generator().manual_seed(3)),
                           torch.tensor([0.1, 0.4]))
    train_toy(config, tmp_path / "c", latent_seed=5, draws=lambda step: other)
    first = json.loads((tmp_path / "c" / "log.jsonl").read_text().splitlines()[0])
    assert first["local"] == pytest.approx(logs[0][0]["local"], abs=1e-6)
    assert first["adjacency"] != pytest.approx(logs[0][0]["adjacency"], abs=1e-6)


def test_reference_identity_crop_is_the_codes_fixed_crop():
    from legato.identity.arcface import IRSE50Model
    from legato.unlearning.losses import identity_loss, reference_identity_crop

    images = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    crop = reference_identity_crop(images)
    resized = torch.nn.functional.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
    assert crop.shape == (2, 3, 112, 112)
    # one output pixel is the mean of its adaptive-pooling window of the 188×188 crop
    window = resized[:, :, 35:223, 32:220][:, :, 0:2, 0:2]  # output (0, 0) covers rows/cols [0, ⌈188/112⌉)
    assert torch.allclose(crop[:, :, 0, 0], window.mean(dim=(2, 3)), atol=1e-6)
    model = IRSE50Model.random(seed=1)
    same = identity_loss(model, images, images, crop="reference")
    other = identity_loss(model, images, images.flip(0), crop="reference")
    assert same.item() == pytest.approx(0.0, abs=1e-5) and other.item() > 1e-3
    # the crop sees only the centre: changing the image outside it leaves the loss unchanged
    border = images.clone()
    border[:, :, :40] = -1.0
    assert identity_loss(model, border, images, crop="reference").item() == pytest.approx(0.0, abs=1e-5)
    centre = images.clone()
    centre[:, :, 200:300] = -1.0
    assert identity_loss(model, centre, images, crop="reference").item() > 1e-4
    with pytest.raises(InputError, match="identity crop"):
        identity_loss(load("toy").identity_model(), torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32),
                      crop="reference")


def test_the_model_trains_in_training_mode_and_is_given_back_in_its_mode(tmp_path):
    import copy

    from legato.unlearning.losses import make_perceptual
    from legato.unlearning.methods import build
    from legato.unlearning.targets import ufo_target
    from legato.unlearning.trainer import train

    config = UnlearnConfig(method="legato", iterations=2, lr=1e-2, hidden=8, seed=11, log_every=1, eval_every=1,
                           checkpoint_every=100)
    modes = []

    def quick(unlearned):
        modes.append(unlearned.training)
        return {"id_target": 1.0, "id_preservation": 1.0}

    gen = load("toy").eval()
    source = copy.deepcopy(gen).requires_grad_(False)
    ws_u = source.mapping(torch.randn(1, source.z_dim, generator=torch.Generator().manual_seed(5))).detach()
    idm = source.identity_model()
    trainable = build(gen, config)
    train(source, trainable, ws_u, ufo_target(ws_u, source.w_avg, "extra", 1.0), config, identity_model=idm,
          perceptual=make_perceptual("identity-features", idm), alpha_max=0.5, work=tmp_path, progress=False,
          quick_scores=quick)
    assert modes == [True, True]  # as the reference's generator.train()
    assert trainable.unlearned.training is False
