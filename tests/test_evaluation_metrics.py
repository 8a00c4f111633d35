"""Metric definitions on cases with known answers (tiny generators built here, no shipped weights)."""

import copy

import numpy as np
import pytest
import torch

from _evaluation_tiny import NoisyGenerator, ShuffledGenerator, TinyGenerator, one_thread
from legato.errors import InputError
from legato.evaluation.fid import frechet_distance
from legato.evaluation.metrics import evaluate, mean_ci95, quick_scores, random_ws

KEYS = ("id_target", "id_others", "id_preservation", "fid_pre", "delta_fid_real")


single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def world():
    gen = TinyGenerator()
    return gen, copy.deepcopy(gen), random_ws(gen, 1, 101), random_ws(gen, 3, 202)


def _run(source, unlearned, target, held, **kw):
    args = dict(n_views=5, n_random=24, n_fid=48, fid_bootstrap=4, progress=False)
    return evaluate(source, unlearned, target, held, **{**args, **kw})


def test_identical_generators_score_one_and_zero_fid(world):
    gen, source, target, held = world
    m = _run(source, gen, target, held)
    for key in ("id_target", "id_others", "id_preservation"):
        assert m[key] == pytest.approx(1.0, abs=1e-5)
    assert m["fid_pre"] == pytest.approx(0.0, abs=1e-6)
    assert m["delta_fid_real"] == pytest.approx(0.0, abs=1e-6)
    assert m["fid_real_source"] > 0.01  # the real set is a different sample, so its FID is not zero
    # sample sizes and intervals are reported
    assert (m["id_target_n"], m["id_others_n"], m["id_preservation_n"], m["fid_pre_n"]) == (5, 3, 24, 48)
    assert m["delta_fid_real_n"] == 48
    for key in KEYS:
        assert m[f"{key}_ci95"] is not None and m[f"{key}_ci95"][0] <= m[key] <= m[f"{key}_ci95"][1] + 1e-9
    assert m["identity_model"] == "tiny-id" and m["fid_features"] == "tiny-id.features" and m["views"] == 5


def test_shuffled_identities_destroy_preservation_but_not_fid(world):
    gen, source, target, held = world
    shuffled = ShuffledGenerator()
    shuffled.load_state_dict(gen.state_dict())
    m = _run(source, shuffled, target, held)
    assert m["id_preservation"] < 0.3 and m["id_others"] < 0.5
    # one person alone in its batch has nobody to swap with: still itself
    assert m["id_target"] == pytest.approx(1.0, abs=1e-5)
    # the same set of faces, only reassigned: the distribution (FID) barely moves
    noisy = NoisyGenerator()
    noisy.load_state_dict(gen.state_dict())
    m_noisy = _run(source, noisy, target, held)
    assert m["fid_pre"] < 0.1 * m_noisy["fid_pre"]
    assert m_noisy["delta_fid_real"] > 1.0 and m_noisy["fid_pre"] > 1.0


def test_forgotten_target_scores_low(world):
    gen, source, target, held = world

    class Forgetting(TinyGenerator):  # draws the forgotten latent as someone else, everyone else unchanged
        def synthesis(self, ws, c=None):
            hit = (ws - target).flatten(1).abs().amax(1) < 1e-6
            ws = torch.where(hit[:, None, None], -ws, ws)
            return super().synthesis(ws, c)

    forgetting = Forgetting()
    forgetting.load_state_dict(gen.state_dict())
    m = _run(source, forgetting, target, held, n_fid=0)
    assert m["id_target"] < 0.0  # tanh is odd: −w is the photographic negative, cosine ≈ −1
    assert m["id_preservation"] == pytest.approx(1.0, abs=1e-5) and m["id_others"] == pytest.approx(1.0, abs=1e-5)
    assert m["fid_pre"] is None and m["fid_pre_n"] == 0  # n_fid = 0 skips FID
    # quick_scores caches the source's embeddings per target: switching targets must not reuse them
    ident = gen.identity_model()
    assert quick_scores(source, forgetting, target, identity_model=ident)["id_target"] < 0.0
    other = random_ws(gen, 1, 303)
    assert quick_scores(source, forgetting, other, identity_model=ident)["id_target"] == pytest.approx(1.0, abs=1e-5)
    assert quick_scores(source, forgetting, target, identity_model=ident)["id_target"] < 0.0


def test_preservation_counts_the_strangers_who_are_lost(world):
    gen, source, target, held = world
    strangers = random_ws(gen, 24, 1)  # the random people evaluate draws with seed 0 (seed + 1)
    lost = strangers[[3, 17]]

    class LosingTwo(TinyGenerator):  # two of the strangers drawn as someone else, everyone else unchanged
        def synthesis(self, ws, c=None):
            hit = (ws[:, None] - lost[None]).flatten(2).abs().amax(2).min(1).values < 1e-6
            ws = torch.where(hit[:, None, None], -ws, ws)
            return super().synthesis(ws, c)

    losing = LosingTwo()
    losing.load_state_dict(gen.state_dict())
    m = _run(source, losing, target, held, n_fid=0)
    per = m["id_preservation_per_latent"]
    assert len(per) == 24 and m["id_preservation_lost"] == 2
    assert per[3] < 0.0 and per[17] < 0.0 and min(v for i, v in enumerate(per) if i not in (3, 17)) > 0.999
    assert m["id_preservation"] == pytest.approx(sum(per) / 24, abs=1e-4)
    assert _run(source, gen, target, held, n_fid=0)["id_preservation_lost"] == 0


def test_no_held_out_means_no_id_others_and_no_real_data_means_no_delta(world):
    gen, source, target, _ = world

    class NoData(TinyGenerator):
        def real_images(self, n, seed=0):
            return None

    src = NoData()
    src.load_state_dict(gen.state_dict())
    m = _run(src, gen, target, None)
    assert "id_others" not in m
    assert m["delta_fid_real"] is None and m["fid_pre"] is not None


def test_quick_scores_agree_with_their_definition(world):
    gen, source, target, _ = world
    q = quick_scores(source, gen, target, identity_model=gen.identity_model())
    assert q == {"id_target": pytest.approx(1.0, abs=1e-5), "id_preservation": pytest.approx(1.0, abs=1e-5)}
    shuffled = ShuffledGenerator()
    shuffled.load_state_dict(gen.state_dict())
    q = quick_scores(source, shuffled, target, identity_model=gen.identity_model(), n_random=16, n_views=3)
    assert q["id_preservation"] < 0.3


def test_frechet_distance_of_a_translation_is_its_squared_length():
    feats = torch.randn(400, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(feats, feats + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("n_a, n_b, dim", [(300, 200, 32), (20, 30, 48), (60, 60, 8)])
def test_frechet_distance_equals_torchmetrics(n_a, n_b, dim):
    """The symmetric form gives torchmetrics' FID, also when a covariance is singular (fewer samples than
    features) and the sets differ in scale and correlation."""
    from _benchmark_scripts import load_benchmark

    torchmetrics_fid = load_benchmark("fid_speed")._torchmetrics_fid  # the benchmark's reference, one copy
    g = torch.Generator().manual_seed(n_a + dim)
    a = torch.randn(n_a, dim, generator=g, dtype=torch.float64) @ torch.randn(dim, dim, generator=g,
                                                                               dtype=torch.float64)
    b = 0.5 * torch.randn(n_b, dim, generator=g, dtype=torch.float64) + 0.3
    reference = torchmetrics_fid(a, b)
    assert reference > 1.0
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-7)
    assert frechet_distance(b, a) == pytest.approx(reference, rel=1e-7)


def test_mean_ci95_is_a_t_interval():
    mean, ci = mean_ci95([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, df=2) · s / √n with s = 1
    assert mean == 2.0 and ci == pytest.approx([2.0 - half, 2.0 + half])
    assert mean_ci95([0.5])[1] is None


def test_bad_inputs_raise_input_errors(world):
    gen, source, target, _ = world
    with pytest.raises(InputError, match="target_ws"):
        evaluate(source, gen, target[:, :1], progress=False)
    with pytest.raises(InputError, match="n_fid"):
        evaluate(source, gen, target, n_fid=1, progress=False)



def test_without_an_identity_model_the_id_metrics_are_none_and_say_so(world):
    gen, _, target, held = world

    class NoIdentity(TinyGenerator):
        def identity_model(self):
            return None

    src = NoIdentity()
    src.load_state_dict(gen.state_dict())
    m = _run(src, gen, target, held)
    for key in ("id_target", "id_others", "id_preservation", "fid_pre", "delta_fid_real"):
        assert m[key] is None and m[f"{key}_n"] == 0 and m[f"{key}_ci95"] is None
    assert m["identity_model"] is None and "identity model" in m["identity_note"]
    assert m["fid_features"] is None and "FID" in m["fid_note"]
    assert quick_scores(src, gen, target, identity_model=None) == {"id_target": None, "id_preservation": None}
    # FID still works when features are given explicitly
    m = _run(src, gen, target, held, fid_features=gen.identity_model().features)
    assert m["id_target"] is None and m["fid_pre"] == pytest.approx(0.0, abs=1e-6)


def test_same_seed_same_numbers(world):
    gen, source, target, held = world
    noisy = NoisyGenerator()
    noisy.load_state_dict(gen.state_dict())
    a = _run(source, noisy, target, held, seed=3)
    b = _run(source, noisy, target, held, seed=3)
    c = _run(source, noisy, target, held, seed=4)
    assert a == b
    assert a["id_preservation"] != c["id_preservation"]


def test_the_source_side_is_kept_between_runs_and_equal_to_a_fresh_computation(world, tmp_path, monkeypatch):
    monkeypatch.setenv("LEGATO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LEGATO_NO_CACHE", raising=False)
    gen, source, target, held = world
    unlearned = NoisyGenerator()
    unlearned.load_state_dict(gen.state_dict())
    first = _run(source, unlearned, target, held)
    kept = sorted((tmp_path / "cache" / "source-features").iterdir())
    assert {p.name.split("-")[0] for p in kept} == {"embeddings", "fid"}  # embeddings, fid-features
    calls = []
    original = type(source).synthesis

    def counting(self, ws, c=None):
        if self is source:
            calls.append(ws.shape[0])
        return original(self, ws, c)

    monkeypatch.setattr(type(source), "synthesis", counting)
    second = _run(source, unlearned, target, held)
    assert calls == [48]  # only the "real" images this tiny world draws with its own generator
    monkeypatch.setattr(type(source), "synthesis", original)
    monkeypatch.setenv("LEGATO_NO_CACHE", "1")
    fresh = _run(source, unlearned, target, held)
    for key in KEYS:
        assert first[key] == second[key] == pytest.approx(fresh[key], abs=1e-9), key
    # other source weights: other entries, not the kept ones
    monkeypatch.delenv("LEGATO_NO_CACHE")
    changed = copy.deepcopy(source)
    with torch.no_grad():
        next(changed.parameters()).add_(0.5)
    _run(changed, unlearned, target, held)
    assert len(list((tmp_path / "cache" / "source-features").iterdir())) > len(kept)


def test_the_stop_check_stops_at_the_first_group_that_fails(world):
    from legato.evaluation.stop_check import ForgetCheck

    gen, source, target, held = world
    model = gen.identity_model()
    # nothing forgotten: the person's own group fails, and the others and strangers are never rendered
    strict = ForgetCheck(source, model, 0.5, target, held)(gen)
    assert strict["passed"] is False and strict["id_target"] > 0.99
    assert strict["id_others"] is None and strict["id_preservation"] is None
    # a threshold everything passes: every group is measured, and the strangers decide
    lenient = ForgetCheck(source, model, 1.5, target, held)
    kept = lenient(gen)
    assert kept["passed"] is True and kept["id_preservation"] == pytest.approx(1.0, abs=1e-5)
    shuffled = ShuffledGenerator()
    shuffled.load_state_dict(gen.state_dict())
    lost = lenient(shuffled)
    assert lost["passed"] is False and lost["id_others"] is not None and lost["id_preservation"] < 0.3
