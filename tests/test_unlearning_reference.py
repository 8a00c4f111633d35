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
