"""The metrics on the shipped SynthFaces generator and identity model (slow; skip when weights are absent)."""

import copy
import time

import pytest
import torch

from legato.errors import LegatoError
from legato.evaluation.metrics import evaluate, quick_scores, random_ws

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthfaces():
    from legato.synthfaces import load_generator

    try:
        gen = load_generator()
    except LegatoError as e:
        pytest.skip(f"SynthFaces weights are not available: {e}")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield gen
    torch.set_num_threads(before)


def test_identical_synthfaces_generators(synthfaces):
    source = copy.deepcopy(synthfaces)
    target = random_ws(source, 1, 1000)
    m = evaluate(source, synthfaces, target, random_ws(source, 2, 2000), n_random=16, n_fid=64, fid_bootstrap=3,
                 progress=False)
    assert m["id_target"] == pytest.approx(1.0, abs=1e-5) and m["id_preservation"] == pytest.approx(1.0, abs=1e-5)
    assert m["fid_pre"] == pytest.approx(0.0, abs=1e-6)
    assert m["identity_model"] and m["fid_features"].endswith(".features")
    assert m["delta_fid_real"] == pytest.approx(0.0, abs=1e-6) and m["fid_real_source"] > 0


def test_quick_scores_under_a_second(synthfaces):
    source = copy.deepcopy(synthfaces)
    ident = source.identity_model()
    target = random_ws(source, 1, 1000)
    quick_scores(source, synthfaces, target, identity_model=ident)  # warm-up
    start = time.perf_counter()
    q = quick_scores(source, synthfaces, target, identity_model=ident)
    elapsed = time.perf_counter() - start
    assert q["id_target"] == pytest.approx(1.0, abs=1e-5)
    assert elapsed < 1.0, f"quick_scores took {elapsed:.2f} s"
