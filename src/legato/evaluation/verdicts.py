"""Pass or fail beside every headline number, with the rule and one line on what the outcome means.

The rules (each a documented choice, docs/evaluation.md):
- `id_target`, `id_others`: below the identity model's same-person threshold (the person is no longer
  recognised in the forgotten latent / in the latents of their other photos);
- `id_preservation`: at least `PRESERVATION_GOAL` (0.95), the mean cosine of random other people between
  source and unlearned model;
- `fid_pre`: at most the FID between two independent sample sets of the source of the same size
  (`fid_pre_floor`): the unlearned model's samples differ from the source's no more than another draw would;
- `delta_fid_real`: its 95% interval reaches 0 or below (image quality against real data not worse);
- `target_plausible`: the forgotten face's sharpness within the central 95% of ordinary samples
  (`evaluation.quality`).
A rule whose inputs are missing gives no verdict (None) rather than a guess.
"""

from __future__ import annotations

PRESERVATION_GOAL = 0.95


def _v(passed: bool | None, rule: str, yes: str, no: str, missing: str = "not measured") -> dict:
    meaning = missing if passed is None else (yes if passed else no)
    return {"passed": passed, "rule": rule, "meaning": meaning}


def verdicts(metrics: dict) -> dict[str, dict]:
    """key → {"passed": True/False/None, "rule": str, "meaning": str} for the headline metrics present."""
    out: dict[str, dict] = {}
    thr = metrics.get("threshold")
    for key, who in (("id_target", "the forgotten latent"), ("id_others", "the person's other photos")):
        value = metrics.get(key)
        if key not in metrics:
            continue
        ok = None if value is None or thr is None else value < thr
        out[key] = _v(ok, f"< {thr:.3f} (same-person threshold)" if thr is not None else "< threshold",
                      f"forgotten: the identity model no longer recognises the person in {who}",
                      f"not forgotten: the identity model still recognises the person in {who}")
    if "id_preservation" in metrics:
        value = metrics.get("id_preservation")
        lost, n = metrics.get("id_preservation_lost"), metrics.get("id_preservation_n")
        # whether a few lookalikes went with the person or everyone drifted: the mean alone cannot say
        count = "" if lost is None or not n else f" ({lost} of {n} no longer recognised as themselves)"
        out["id_preservation"] = _v(
            None if value is None else value >= PRESERVATION_GOAL, f"≥ {PRESERVATION_GOAL}",
            "kept: random other people stay themselves after unlearning" + count,
            "damaged: other people's identities changed along with the forgotten one" + count)
    if "fid_pre" in metrics:
        value, floor = metrics.get("fid_pre"), metrics.get("fid_pre_floor")
        out["fid_pre"] = _v(
            None if value is None or floor is None else value <= floor,
            f"≤ {floor:.3f} (two independent source samples)" if floor is not None else "≤ sampling floor",
            "untouched: the samples differ from the source's less than two draws of the source do",
            "changed: the generator's samples moved further than sampling noise explains")
    if "delta_fid_real" in metrics:
        value, ci = metrics.get("delta_fid_real"), metrics.get("delta_fid_real_ci95")
        ok = None if value is None else (value <= 0 or (ci is not None and ci[0] <= 0))
        out["delta_fid_real"] = _v(ok, "95% interval reaches ≤ 0",
                                   "quality kept: no worse against real data than the source",
                                   "quality lost: further from real data than the source")
    if "target_plausible" in metrics:
        rng = metrics.get("ordinary_sharpness_range")
        rule = f"sharpness in [{rng[0]:.4g}, {rng[1]:.4g}] (ordinary samples)" if rng else "ordinary sharpness"
        out["target_plausible"] = _v(metrics.get("target_plausible"), rule,
                                     "a plausible face: as sharp as ordinary samples, not a blur or noise",
                                     "not a plausible face: blurrier or noisier than ordinary samples")
    return out


def mark(passed: bool | None) -> str:
    return "—" if passed is None else ("✔" if passed else "✘")
