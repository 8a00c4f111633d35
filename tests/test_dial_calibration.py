"""The stored strength map (`ode.strength_map`) and its fit by the loss's model (`unlearning.dial_calibration`)."""

import copy
import json

import numpy as np
import pytest
import torch

from _evaluation_tiny import TinyGenerator, push_adapter
from legato.errors import CheckpointError
from legato.ode import StrengthMap, attach, load_bundle, save_bundle
from legato.unlearning.dial_calibration import calibrate_dial
from legato.unlearning.targets import identity_profile


def test_a_map_interpolates_between_its_knots_and_keeps_both_ends():
    m = StrengthMap([0, 0.5, 1], [0, 0.2, 1])
    assert m(0) == 0 and m(1) == 1
    assert m(0.25) == pytest.approx(0.1) and m(0.75) == pytest.approx(0.6)
    assert StrengthMap.from_json(m.to_json()) == m
    assert StrengthMap.from_json(None) is None


@pytest.mark.parametrize("data", [
    {"strengths": [0, 1], "values": [0, 0.9]},          # does not end at (1, 1)
    {"strengths": [0, 0.6, 0.4, 1], "values": [0, 0.1, 0.2, 1]},  # strengths not increasing
    {"strengths": [0, 0.5, 1], "values": [0, 0.7, 0.3]},  # values falling (not an end)
    {"strengths": [0, 0.5, 1], "values": [0, float("nan"), 1]},
    {"strengths": [0, 1], "values": [0, 0.5, 1]},
    {"strengths": "0,1", "values": [0, 1]},
    {"values": [0, 1]},
    [0, 1],
])
def test_a_damaged_map_is_one_checkpoint_error(data):
    with pytest.raises(CheckpointError, match="strength_map is damaged"):
        StrengthMap.from_json(data, where="cfg.json")


def test_an_adapter_set_turns_its_time_span_through_the_map_and_the_bundle_keeps_it(tmp_path):
    g = TinyGenerator()
    adapters = attach(g, ["body"], hidden=4, step_size=0.4)
    push_adapter(adapters)
    ws = g.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)))
    adapters.strength_map = StrengthMap([0, 0.5, 1], [0, 0.1, 1])
    adapters.strength = 0.5
    assert all(a.strength == pytest.approx(0.1) for a in adapters)
    at_half = g.synthesis(ws).detach()
    adapters.strength_map = None  # without the map strength 0.5 is half the span: another image
    assert not torch.allclose(g.synthesis(ws), at_half)
    adapters.strength = 0.1
    assert torch.allclose(g.synthesis(ws), at_half, atol=1e-6)
    adapters.strength_map = StrengthMap([0, 0.5, 1], [0, 0.1, 1])
    adapters.strength = 0.5
    save_bundle(adapters, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "adapter_config.json").read_text())["strength_map"]["values"] == [0, 0.1, 1]
    adapters.detach()
    loaded = load_bundle(tmp_path / "b", g)
    assert loaded.strength == 0.5 and loaded.strength_map == StrengthMap([0, 0.5, 1], [0, 0.1, 1])
    assert torch.allclose(g.synthesis(ws), at_half, atol=1e-6)


def test_a_bundle_with_a_damaged_map_is_refused_and_leaves_the_model_bare(tmp_path):
    g = TinyGenerator()
    adapters = attach(g, ["body"], hidden=4)
    save_bundle(adapters, tmp_path / "b")
    adapters.detach()
    cfg_path = tmp_path / "b" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["strength_map"] = {"strengths": [0, 1], "values": [1, 0]}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="strength_map"):
        load_bundle(tmp_path / "b", g)
    attach(g, ["body"], hidden=4).detach()  # no set was left on the model


def _loss_curve(source, unlearned, dial, ws, model, strengths):
    import torch.nn.functional as F
    views = source.views(3)
    out = []
    for s in strengths:
        dial.strength = float(s)
        total = 0.0
        for v in range(3):
            c = views[v:v + 1].expand(ws.shape[0], -1)
            a = F.normalize(model.embed(source.synthesis(ws, c)), dim=1)
            b = F.normalize(model.embed(unlearned.synthesis(ws, c)), dim=1)
            total += float((a * b).sum(1).mean()) / 3
        out.append(total)
    return out


def _pushed_result():
    """A source, a copy with a strong constant-push adapter (its raw dial forgets early), the loss model and
    one forgotten latent."""
    source = TinyGenerator()
    unlearned = copy.deepcopy(source)
    adapters = attach(unlearned, ["body"], hidden=4, step_size=0.1)
    push_adapter(adapters, amount=6.0)
    ws = source.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(4)))
    return source, unlearned, source.identity_model(), adapters, ws


@torch.no_grad()
def test_the_calibrated_dial_follows_the_loss_models_profile_where_the_raw_one_does_not():
    source, unlearned, model, adapters, ws = _pushed_result()
    strengths = [i / 10 for i in range(11)]
    raw = _loss_curve(source, unlearned, adapters, ws, model, strengths)
    result = calibrate_dial(source, unlearned, adapters, ws, model, model.threshold, crossing=0.5, n_grid=41)
    assert adapters.strength_map is result["strength_map"]
    calibrated = _loss_curve(source, unlearned, adapters, ws, model, strengths)
    want = identity_profile(torch.tensor(strengths), model.threshold, calibrated[-1], 0.5).tolist()
    raw_error = max(abs(a - b) for a, b in zip(raw, want, strict=True))
    error = max(abs(a - b) for a, b in zip(calibrated, want, strict=True))
    assert calibrated[0] == pytest.approx(1.0) and calibrated[-1] == pytest.approx(raw[-1])  # both ends kept
    assert raw_error > 0.1 and error < 0.05, (raw, calibrated, want)
    assert all(b <= a + 1e-6 for a, b in zip(calibrated, calibrated[1:], strict=False))


@torch.no_grad()
def test_the_image_calibration_moves_the_image_evenly_either_side_of_the_loss_models_crossing():
    from legato.unlearning.dial_calibration import measure

    source, unlearned, model, adapters, ws = _pushed_result()
    calibrate_dial(source, unlearned, adapters, ws, model, model.threshold, how="image", crossing=0.5, n_grid=81)
    strength_map = adapters.strength_map
    u = [strength_map(i / 10) for i in range(11)]
    curves = measure(source, unlearned, adapters, ws, model, n_grid=161)  # the raw dial, finely
    d = np.interp(u, curves["grid"], np.maximum.accumulate(curves["distance"]))
    first, second = np.diff(d[:6]), np.diff(d[5:])
    assert first.min() > 0 and second.min() > 0
    assert np.allclose(first, first.mean(), atol=0.05 * d[-1]) and np.allclose(second, second.mean(), atol=0.05 * d[-1])
    score_at_half = float(np.interp(u[5], curves["grid"], curves["score"]))
    assert score_at_half == pytest.approx(model.threshold, abs=0.03)  # the loss model's crossing sits at s = 0.5
    raw_score_at_half = float(np.interp(0.5, curves["grid"], curves["score"]))
    assert abs(raw_score_at_half - model.threshold) > 0.1  # which the raw dial does not do


def test_an_unknown_calibration_is_refused():
    from legato.unlearning.dial_calibration import fit_map

    curves = {"grid": np.linspace(0, 1, 3), "score": np.array([1.0, 0.5, 0.0]), "distance": np.array([0, 1.0, 2.0])}
    with pytest.raises(ValueError, match="unknown dial calibration"):
        fit_map(curves, "median", 0.5)
    assert fit_map(curves, "image", 0.75, crossing=0.5)(0.5) == pytest.approx(0.25, abs=1e-3)
