"""The strength sweep, the fade strip and the plots, on a tiny generator with an adapter built here."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from _evaluation_tiny import TinyGenerator, one_thread, push_adapter
from legato.errors import InputError
from legato.evaluation.metrics import evaluate, random_ws
from legato.evaluation.plots import plot_collapse
from legato.evaluation.sweep import run_sweep, save_fade_strip, save_sweep_plot
from legato.ode import attach

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture()
def setup():
    gen = TinyGenerator()
    source = copy.deepcopy(gen)
    adapters = attach(gen, gen.adapter_sites(), hidden=8)
    push_adapter(adapters, 1.0)
    adapters.strength = 0.7
    return source, gen, adapters, random_ws(gen, 1, 101), random_ws(gen, 2, 202)


def test_sweep_points_match_evaluate_at_each_strength(setup):
    source, gen, adapters, target, held = setup
    strengths = [0.0, 0.5, 1.0]
    result = run_sweep(source, gen, adapters, target, held, strengths, identity_model=gen.identity_model(),
                       n_random=6, n_views=3, seed=5)
    assert adapters.strength == 0.7  # restored
    assert [p["strength"] for p in result["points"]] == strengths
    for point in result["points"]:
        adapters.strength = point["strength"]
        m = evaluate(source, gen, target, held, n_views=3, n_random=6, n_fid=0, seed=5, progress=False)
        for key in ("id_target", "id_others", "id_preservation"):
            assert point[key] == pytest.approx(m[key], abs=1e-5)
    assert result["points"][0]["id_target"] == pytest.approx(1.0, abs=1e-6)
    assert result["strength0_max_abs_diff"] == 0.0  # strength 0 reproduces the source exactly


def test_a_steady_push_gives_a_monotone_sweep_with_rho_minus_one(setup):
    source, gen, adapters, target, held = setup
    result = run_sweep(source, gen, adapters, target, held, identity_model=gen.identity_model(), n_random=4,
                       n_views=3)
    assert len(result["points"]) == 11
    ids = [p["id_target"] for p in result["points"]]
    assert ids[-1] < ids[0] - 0.1
    assert result["spearman"] == pytest.approx(-1.0) and result["monotone"] is True
    json.dumps(result)  # JSON-ready


def test_an_untrained_adapter_changes_nothing_and_has_no_rho():
    gen = TinyGenerator()
    source = copy.deepcopy(gen)
    adapters = attach(gen, gen.adapter_sites(), hidden=8)  # zero-initialised field: the identity map
    result = run_sweep(source, gen, adapters, random_ws(gen, 1, 1), None, [0, 0.5, 1],
                       identity_model=gen.identity_model(), n_random=0, n_views=2)
    assert all(p["id_target"] == pytest.approx(1.0, abs=1e-6) for p in result["points"])
    assert result["spearman"] is None and "id_others" not in result["points"][0]


def test_bad_strengths_are_refused(setup):
    source, gen, adapters, target, _ = setup
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        run_sweep(source, gen, adapters, target, strengths=[0, 1.5], identity_model=gen.identity_model())


def test_plot_and_fade_strip_files(setup, tmp_path):
    source, gen, adapters, target, held = setup
    strengths = [0.0, 0.25, 0.5, 0.75, 1.0]
    result = run_sweep(source, gen, adapters, target, held, strengths, identity_model=gen.identity_model(),
                       n_random=4, n_views=2)
    plot = save_sweep_plot(result, tmp_path / "sweep.png")
    strip = save_fade_strip(gen, adapters, target, strengths, tmp_path / "strip.png")
    assert adapters.strength == 0.7
    with Image.open(plot) as im:
        assert im.width > 200 and im.height > 150
    with Image.open(strip) as im:
        arr = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32))
        assert im.width > 5 * im.height // 2  # one row of 5 tiles (plus the label band)
    tile = (arr.shape[1] - 2) // 5
    first, last = arr[: tile - 4, 2:tile], arr[: tile - 4, 4 * tile + 2:5 * tile]
    assert (first - last).abs().mean() > 5  # the face changes from strength 0 to 1


def test_collapse_plot_reads_log_jsonl(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"step": 10, "total": 1.0}]  # a loss-only line, ignored
    lines += [{"step": s, "id_target": 1 - s / 100, "id_preservation": 0.95} for s in (0, 50, 100)]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    png = plot_collapse(log, tmp_path / "collapse.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 200
    (tmp_path / "empty.jsonl").write_text(json.dumps({"step": 1, "total": 2.0}) + "\n")
    with pytest.raises(InputError, match="nothing to plot"):
        plot_collapse(tmp_path / "empty.jsonl", tmp_path / "x.png")


def test_spearman_matches_known_values():
    from legato.evaluation.sweep import spearman

    assert spearman([0, 1, 2, 3], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0, 1, 2, 3], [1, 2, 2, 5]) == pytest.approx(0.9486832980505138)  # ties share ranks
    assert spearman([0, 1, 2, 3, 4], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([0, 1, 2], [1, 1, 1]) is None
