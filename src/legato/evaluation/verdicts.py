"""Pass or fail beside every headline number, with the rule and one line on what the outcome means.

The rules (each a documented choice, docs/reference/metrics-and-verdicts.md):
- `id_target`, `id_others`: the whole 95% interval below the identity model's same-person threshold (the
  person is no longer recognised in the forgotten latent / in the latents of their other photos); ✘ when
  the whole interval is at or above it; inconclusive when it spans the threshold;
- `id_preservation`: at least `PRESERVATION_GOAL` (0.95), the mean cosine of random other people between
  source and unlearned model;
- `fid_pre`: at most the FID between two independent sample sets of the source of the same size
  (`fid_pre_floor`): the unlearned model's samples differ from the source's no more than another draw would;
- `delta_fid_real`: a non-inferiority rule — ✔ when the upper end of its 95% interval is at most
  `FID_MARGIN` (10%) of FID(source, real), ✘ when the lower end is above that margin, otherwise
  inconclusive (the interval is too wide to tell);
- `target_plausible`: the forgotten face's sharpness within the central 95% of ordinary samples
  (`evaluation.quality`).
A rule whose inputs are missing gives no verdict (None) rather than a guess. A rule whose sample is
below its minimum (`MIN_SAMPLES`) reads "inconclusive (n too small)", never ✔ (a ✘ on a small sample
stays ✘). A run judged by the network that also drove its loss (`judge_is_trainer`) shows no ✔ for
the identity and FID rules: the verdict there is "self-judged", since an optimiser and its own critic
agreeing is no evidence.
"""

from __future__ import annotations

PRESERVATION_GOAL = 0.95
FID_MARGIN = 0.10  # ΔFID_real: the quality loss (a fraction of FID(source, real)) the rule calls material
# the smallest sample each rule decides on (image pairs of the forgotten latent, other photos, strangers, images)
MIN_SAMPLES = {"id_target": 5, "id_others": 3, "id_preservation": 20, "fid_pre": 200, "delta_fid_real": 200}
SELF_JUDGED = ("id_target", "id_others", "id_preservation", "fid_pre", "delta_fid_real")


def _v(passed: bool | None, rule: str, yes: str, no: str, missing: str = "not measured") -> dict:
    meaning = missing if passed is None else (yes if passed else no)
    return {"passed": passed, "rule": rule, "meaning": meaning}


def _fmt(ci) -> str:
    return "[—]" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _n(metrics: dict, key: str) -> int | None:
    n = metrics.get(f"{key}_n")
    return None if n is None else int(n)


def _powered(out: dict, metrics: dict) -> None:
    """A ✔ on too small a sample becomes 'inconclusive (n too small)' (a ✘ stays: it is the cautious side)."""
    for key, minimum in MIN_SAMPLES.items():
        v = out.get(key)
        if v is None or v["passed"] is not True:
            continue
        n = _n(metrics, key)
        if n is not None and n < minimum:
            v.update(passed=None, inconclusive=True, meaning=f"inconclusive (n too small: {n} < {minimum})")
        v["min_n"] = minimum


def _self_judged(out: dict, metrics: dict) -> None:
    if not metrics.get("judge_is_trainer"):
        return
    for key in SELF_JUDGED:
        v = out.get(key)
        if v is None:
            continue
        was = v["passed"]
        v.update(passed=None, self_judged=True, meaning=(
            f"self-judged: {metrics.get('identity_model')} also drove the loss, so this is no verdict "
            f"(it would read {mark(was)}); judge with another model (--judge-model)"))


def verdicts(metrics: dict) -> dict[str, dict]:
    """key → {"passed": True/False/None, "rule": str, "meaning": str} for the headline metrics present."""
    out: dict[str, dict] = {}
    thr = metrics.get("threshold")
    for key, who in (("id_target", "the forgotten latent"), ("id_others", "the person's other photos")):
        value = metrics.get(key)
        if key not in metrics:
            continue
        ci = metrics.get(f"{key}_ci95")
        ok = None if value is None or thr is None else value < thr
        undecided = False
        if ok is not None and ci is not None and None not in ci:
            # the whole 95% interval must be on one side of the threshold; otherwise the sample cannot tell
            ok = True if ci[1] < thr else (False if ci[0] >= thr else None)
            undecided = ok is None
        out[key] = _v(ok, (f"95% interval < {thr:.3f} (same-person threshold)" if thr is not None
                           else "< threshold"),
                      f"forgotten: the identity model no longer recognises the person in {who}",
                      f"not forgotten: the identity model still recognises the person in {who}",
                      f"inconclusive: the interval {_fmt(ci)} spans the threshold" if undecided else "not measured")
        if undecided:
            out[key]["inconclusive"] = True
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
        base = metrics.get("fid_real_source")
        margin = None if base is None else FID_MARGIN * abs(float(base))
        ok = None
        if value is not None and ci is not None and margin is not None:
            ok = True if ci[1] <= margin else (False if ci[0] > margin else None)
        rule = (f"95% interval within ≤ {margin:.3f} ({FID_MARGIN:.0%} of FID(source, real))" if margin is not None
                else f"95% interval within {FID_MARGIN:.0%} of FID(source, real)")
        out["delta_fid_real"] = _v(ok, rule,
                                   "quality kept: no materially worse against real data than the source",
                                   "quality lost: materially further from real data than the source",
                                   "not measured" if value is None or ci is None else
                                   "inconclusive: the interval is too wide to tell (more --n-fid)")
        if ok is None and value is not None and ci is not None:
            out["delta_fid_real"]["inconclusive"] = True
    if "target_plausible" in metrics:
        rng = metrics.get("ordinary_sharpness_range")
        rule = f"sharpness in [{rng[0]:.4g}, {rng[1]:.4g}] (ordinary samples)" if rng else "ordinary sharpness"
        out["target_plausible"] = _v(metrics.get("target_plausible"), rule,
                                     "a plausible face: as sharp as ordinary samples, not a blur or noise",
                                     "not a plausible face: blurrier or noisier than ordinary samples")
    _powered(out, metrics)
    _self_judged(out, metrics)
    return out


def mark(passed: bool | None) -> str:
    return "—" if passed is None else ("✔" if passed else "✘")


def mark_of(verdict: dict) -> str:
    """✔ / ✘, '?' for an inconclusive verdict, '⚠' for a self-judged one, '—' when not measured."""
    if verdict.get("self_judged"):
        return "⚠"
    if verdict.get("inconclusive"):
        return "?"
    return mark(verdict["passed"])
