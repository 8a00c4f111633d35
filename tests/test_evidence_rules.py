"""The rules behind every verdict: power (a ✔ needs enough samples), non-inferiority for ΔFID_real, no ✔
when the judge is the trainer, and the dial's measures."""

import pytest
import torch

from legato.evaluation.sweep import dial_quality
from legato.evaluation.verdicts import MIN_SAMPLES, mark_of, verdicts
from legato.unlearning.targets import identity_profile

GOOD = {"threshold": 0.78, "id_target": 0.1, "id_target_n": 11, "id_preservation": 0.99, "id_preservation_n": 30,
        "fid_pre": 1.0, "fid_pre_floor": 2.0, "fid_pre_n": 300, "delta_fid_real": 0.1,
        "delta_fid_real_ci95": [-0.4, 0.6], "fid_real_source": 20.0, "delta_fid_real_n": 300}


def test_a_powered_run_by_an_independent_judge_passes():
    judged = verdicts(GOOD)
    assert all(judged[k]["passed"] is True for k in ("id_target", "id_preservation", "fid_pre", "delta_fid_real"))
    assert mark_of(judged["delta_fid_real"]) == "✔"


@pytest.mark.parametrize("key", ["id_target", "id_preservation", "fid_pre", "delta_fid_real"])
def test_too_few_samples_is_inconclusive_never_a_pass(key):
    judged = verdicts({**GOOD, f"{key}_n": MIN_SAMPLES[key] - 1})
    assert judged[key]["passed"] is None and judged[key]["inconclusive"]
    assert "n too small" in judged[key]["meaning"] and mark_of(judged[key]) == "?"
    # one more sample and the same numbers decide
    assert verdicts({**GOOD, f"{key}_n": MIN_SAMPLES[key]})[key]["passed"] is True


def test_a_wide_fid_interval_is_inconclusive_and_a_clear_loss_fails():
    # the 2-iteration run of the issue: ΔFID 31.9 [−7.9, 71.7] used to pass because the interval reached 0
    wide = verdicts({**GOOD, "delta_fid_real": 31.9, "delta_fid_real_ci95": [-7.9, 71.7]})["delta_fid_real"]
    assert wide["passed"] is None and wide["inconclusive"] and mark_of(wide) == "?"
    lost = verdicts({**GOOD, "delta_fid_real": 8.0, "delta_fid_real_ci95": [5.0, 11.0]})["delta_fid_real"]
    assert lost["passed"] is False and mark_of(lost) == "✘"


def test_a_self_judged_run_shows_no_pass():
    judged = verdicts({**GOOD, "judge_is_trainer": True, "identity_model": "synthfaces-id"})
    for key in ("id_target", "id_preservation", "fid_pre", "delta_fid_real"):
        assert judged[key]["passed"] is None and judged[key]["self_judged"], key
        assert mark_of(judged[key]) == "⚠" and "self-judged" in judged[key]["meaning"]


def test_dial_quality_measures_an_even_dial_and_an_overshooting_switch():
    s = [i / 10 for i in range(11)]
    even = [1 - 0.12 * i for i in range(11)]  # falls 0.12 a step: crosses 0.78 at s ≈ 0.18
    q = dial_quality(s, even, 0.78)
    assert q["spearman"] == pytest.approx(-1) and q["largest_step_fraction"] == pytest.approx(0.1)
    assert q["crossing_strength"] == pytest.approx(0.1 + 0.1 * (0.88 - 0.78) / 0.12)
    assert not q["dial_ok"]  # crossing before 0.3
    # the shipped demo's sweep before the path dial: a switch at 0.1–0.2 with an overshoot
    demo = [1.0, 0.47, -0.26, -0.48, -0.54, -0.60, -0.58, -0.54, -0.47, -0.39, -0.30]
    q = dial_quality(s, demo, 0.78)
    assert q["spearman"] > -1 and q["largest_step_fraction"] > 0.25 and not q["dial_ok"]
    profile = identity_profile(torch.tensor(s), 0.78, -0.3, 0.5).tolist()
    q = dial_quality(s, profile, 0.78, preservation=[0.99] * 11)
    assert q["dial_ok"] and q["crossing_strength"] == pytest.approx(0.5, abs=1e-6)
    assert not dial_quality(s, profile, 0.78, preservation=[0.99] * 10 + [0.9])["dial_ok"]


@pytest.mark.parametrize(("ci", "mark"), [((-0.2, 0.5), "✔"), ((0.1, 0.9), "?"), ((0.8, 0.95), "✘")])
def test_identity_verdicts_need_the_whole_interval_on_one_side(ci, mark):
    # the demo's other photos read 0.410 [−0.068, 0.888] against 0.779: too wide to call forgotten
    m = {**GOOD, "id_others": sum(ci) / 2, "id_others_ci95": list(ci), "id_others_n": 4,
         "threshold": 0.779}
    assert mark_of(verdicts(m)["id_others"]) == mark
