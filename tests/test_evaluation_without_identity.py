"""A backend without an identity model (as real NVlabs networks are): sweeps, plots and reports still work,
with the identity scores left empty and the reason recorded. Uses the built-in toy generator."""

import copy

import pytest
import torch

from legato.evaluation.metrics import random_ws
from legato.evaluation.report import write_report
from legato.evaluation.sweep import run_sweep, save_fade_strip, save_sweep_plot
from legato.generators.toy import ToyGenerator
from legato.ode import attach


class _Anonymous(ToyGenerator):
    def identity_model(self):
        return None


@pytest.fixture()
def pair():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = _Anonymous()
    source = copy.deepcopy(gen)
    adapters = attach(gen, gen.adapter_sites(), hidden=8)
    with torch.no_grad():
        for p in adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    yield source, gen, adapters
    torch.set_num_threads(before)


def test_sweep_without_identity_model_keeps_strength_zero_exact_and_says_why(pair, tmp_path):
    source, gen, adapters = pair
    target = random_ws(source, 1, 7)
    strengths = [0.0, 0.5, 1.0]
    result = run_sweep(source, gen, adapters, target, random_ws(source, 2, 8), strengths, n_random=3, n_views=2)
    assert [p["strength"] for p in result["points"]] == strengths
    assert all(p["id_target"] is None and p["id_others"] is None and p["id_preservation"] is None
               for p in result["points"])
    assert result["spearman"] is None and result["monotone"] is None and result["identity_model"] is None
    assert "identity model" in result["identity_note"]
    assert result["strength0_max_abs_diff"] == 0.0
    assert adapters.strength == 1.0  # restored
    plot = save_sweep_plot(result, tmp_path / "sweep.png")
    strip = save_fade_strip(gen, adapters, target, strengths, tmp_path / "strip.png")
    page = write_report(tmp_path, {"id_target": None, "id_target_n": 0, "identity_note": result["identity_note"]},
                        {"strip": strip}, {"sweep": plot}, title="no identity model").read_text()
    assert page.count("<img") == 2 and "identity model" in page
