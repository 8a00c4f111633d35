"""The benchmark: LEGATO against the baselines on SynthFaces, side by side, in one run.

    .venv/bin/python benchmarks/run.py --quick     # make bench
    .venv/bin/python benchmarks/run.py --full      # make bench-full

Writes `benchmarks/results/<mode>/`: `runs.csv` (one row per run), `table.md` (mean ± 95% interval per
scenario and method), `collapse.png`, `many_identities.png`, `controllability.png`, `ablations.md`, and
`summary.json`. Every number is measured in this one process, on this machine, so ratios between methods
are meaningful even where absolute times are not.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from legato.unlearning.run_folder import read_people

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # the sibling bench_render.py, also when this file is loaded by path
from bench_render import (  # noqa: E402
    collapse_reference_table,
    cpu_name,
    provenance,
    readme_block,
    update_docs,
    update_readme,
)

METHODS = ("legato", "guide", "residual", "lora", "salun", "baseline")  # legato.unlearning.config.METHODS
DIAL_METHODS = ("legato", "residual", "lora")  # the methods with a strength dial
SCENARIOS = {
    "random": lambda i: f"seed:{100 + i}",
    "in-domain": lambda i: f"person:{1_000_100 + i}",
    "out-of-domain": lambda i: f"ood-person:{1_000_200 + i}",
}
MODES = {
    # identities per scenario, iterations, collapse steps, many-identities count, eval sizes, quick-score period
    "quick": dict(identities=2, iterations=150, collapse=450, many=3, n_random=16, n_fid=64, ablate_ids=1,
                  eval_every=25, dial_ids=2, collapse_reference=600),
    "standard": dict(identities=8, iterations=150, collapse=450, many=3, n_random=16, n_fid=64, ablate_ids=1,
                     eval_every=50, dial_ids=4, collapse_reference=3000),
    "full": dict(identities=10, iterations=1000, collapse=3000, many=20, n_random=100, n_fid=1000, ablate_ids=3,
                 eval_every=100, dial_ids=8, collapse_reference=3000),
}
METRICS = ("id_target", "id_others", "id_preservation", "fid_pre", "delta_fid_real")


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a t-based 95% interval."""
    from scipy import stats

    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def _init_worker() -> None:
    from legato.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)  # one thread per worker: on a small CPU, two workers beat one two-thread job


def _pool(workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)


def run_one(spec: str, method: str, out: Path, mode: dict, report: bool = False, **overrides) -> dict:
    from legato.synthfaces import load_generator
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.run import unlearn

    gen = load_generator()
    cfg = UnlearnConfig.for_generator(gen, method=method, iterations=mode["iterations"],
                                      eval_every=mode.get("eval_every", 50), **overrides)
    if mode.get("resume"):
        done = finished_run(out, cfg.to_dict(), mode)
        if done is not None:
            return done
    t0 = time.perf_counter()
    metrics = unlearn(gen, spec, out, cfg, overwrite=True, n_random=mode["n_random"],
                      n_fid=mode["n_fid"], progress=False, report=report)
    metrics["wall_seconds"] = time.perf_counter() - t0
    return metrics


def finished_run(out: Path, config: dict, mode: dict) -> dict | None:
    """The metrics of a run already finished with these settings (`--resume`), else None."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return None
    same = (saved.get("config") == json.loads(json.dumps(config, default=str))
            and saved.get("n_random") == mode["n_random"] and saved.get("n_fid") == mode["n_fid"])
    if not same:
        return None
    metrics["resumed"] = True
    return metrics


def main_table(mode: dict, out: Path, rows: list[dict]) -> None:
    jobs = [(scenario, i, method) for scenario in SCENARIOS if scenario in mode["scenarios"]
            for i in range(mode.get("first", 0), mode.get("first", 0) + mode["identities"])
            for method in mode["methods"]]
    with _pool(mode["workers"]) as pool:
        futures = [pool.submit(run_one, SCENARIOS[sc](i), method, out / "runs" / f"{sc}-{i}-{method}", mode,
                               report=method in DIAL_METHODS, **mode.get("adapter_options", {}))
                   for sc, i, method in jobs]
        for (scenario, i, method), fut in zip(jobs, futures, strict=True):
            m = fut.result()
            row = {"scenario": scenario, "identity": SCENARIOS[scenario](i), "method": method,
                   **{k: m.get(k) for k in METRICS}, "trainable_params": m["trainable_params"],
                   "seconds": m["seconds"], "seconds_to_forget": m.get("seconds_to_forget"),
                   "steps": m.get("steps"), "stopped_early": m.get("stopped_early"),
                   "step_verified": m.get("step_verified"), "seconds_to_verified": m.get("seconds_to_verified"),
                   "stop_check_seconds": m.get("stop_check_seconds"),
                   "wall_seconds": round(m.get("wall_seconds", float("nan")), 1),
                   "peak_rss_mb": m["peak_rss_mb"], "threshold": m.get("threshold"),
                   "strangers_lost": m.get("id_preservation_lost"),
                   "sweep_spearman": m.get("sweep_spearman_id_target"),
                   **{k if k == "dial_ok" else f"dial_{k}": v for k, v in (m.get("dial_quality") or {}).items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_table(rows, out)  # keep what is done if the run is cut short


def write_table(rows: list[dict], out: Path) -> str:
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| scenario | method | id_target ↓ | id_others ↓ | id_preservation ↑ | fid_pre ↓ | ΔFID_real ↓ "
             "| trainable params | train s | s to forget | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(vals):
        m, h = ci95(vals)
        if math.isnan(m):
            return "—"
        return f"{m:.3f}" + ("" if math.isnan(h) else f" ± {h:.3f}")

    for scenario in SCENARIOS:
        for method in METHODS:
            sel = [r for r in rows if r["scenario"] == scenario and r["method"] == method]
            if not sel:
                continue
            forgot = [r["seconds_to_forget"] for r in sel if r["seconds_to_forget"] is not None]
            lines.append(
                f"| {scenario} | {method} | " + " | ".join(fmt([r[k] for r in sel]) for k in METRICS)
                + f" | {sel[0]['trainable_params']:,} | {statistics.fmean(r['seconds'] for r in sel):.0f}"
                + f" | {statistics.fmean(forgot):.1f} ({len(forgot)}/{len(sel)})" if forgot else
                f"| {scenario} | {method} | " + " | ".join(fmt([r[k] for r in sel]) for k in METRICS)
                + f" | {sel[0]['trainable_params']:,} | {statistics.fmean(r['seconds'] for r in sel):.0f} | never"
            )
            lines[-1] += f" | {max(r['peak_rss_mb'] for r in sel):.0f} |"
    lines += _time_ratio_lines(rows) + _dial_lines(rows)
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    return table


DIAL_METHODS = ("legato", "residual", "lora")  # the methods with a strength dial: their runs sweep it


def _dial_lines(rows: list[dict]) -> list[str]:
    """Per method with a dial: Spearman ρ of id_target over s = 0, 0.1, …, 1 (mean and worst), the largest
    step as a share of the fall, where the threshold is crossed, and how many runs meet every dial rule."""
    out = []
    for scenario in SCENARIOS:
        for method in DIAL_METHODS:
            sel = [r for r in rows if r["scenario"] == scenario and r["method"] == method
                   and r.get("dial_spearman") is not None]
            if not sel:
                continue
            rho = [r["dial_spearman"] for r in sel]
            steps = [r["dial_largest_step_fraction"] for r in sel if r.get("dial_largest_step_fraction") is not None]
            cross = [r["dial_crossing_strength"] for r in sel if r.get("dial_crossing_strength") is not None]
            line = (f"\n{scenario}, {method}'s dial over {len(sel)} people: ρ {statistics.fmean(rho):.2f} "
                    f"(worst {max(rho):.2f})")
            if steps:
                line += f", largest step {statistics.fmean(steps):.2f} of the fall (worst {max(steps):.2f})"
            if cross:
                line += f", threshold crossed at s = {statistics.fmean(cross):.2f} ({min(cross):.2f}–{max(cross):.2f})"
            line += f"; every dial rule met: {sum(bool(r.get('dial_ok')) for r in sel)}/{len(sel)}"
            out.append(line)
    return out


def _time_ratio_lines(rows: list[dict]) -> list[str]:
    """legato's time against guide's on the same people, run by run (training seconds and whole-run wall
    seconds; with `--set early_stop=true` the training ends at the verified forget), when both ran."""
    out = []
    for scenario in SCENARIOS:
        by = {(r["identity"], r["method"]): r for r in rows if r["scenario"] == scenario}
        people = sorted({i for i, m in by if m == "legato" and (i, "guide") in by})
        if not people:
            continue
        pairs = [(by[(i, "legato")], by[(i, "guide")]) for i in people]
        train = [a["seconds"] / b["seconds"] for a, b in pairs if b["seconds"]]
        wall = [a["wall_seconds"] / b["wall_seconds"] for a, b in pairs
                if b.get("wall_seconds") and not math.isnan(b["wall_seconds"])]
        stopped = {m: sum(bool(r["stopped_early"]) for r in rs) for m, rs in
                   (("legato", [a for a, _ in pairs]), ("guide", [b for _, b in pairs]))}
        line = (f"\n{scenario}, legato / guide on the same {len(pairs)} people: training time "
                f"{statistics.fmean(train):.2f}× (worst {max(train):.2f}×)")
        if wall:
            line += f", whole-run wall time {statistics.fmean(wall):.2f}× (worst {max(wall):.2f}×)"
        line += f"; stopped early: legato {stopped['legato']}/{len(pairs)}, guide {stopped['guide']}/{len(pairs)}"
        verified = [(_to_verified(a), _to_verified(b)) for a, b in pairs]
        verified = [(a, b) for a, b in verified if a is not None and b is not None and b[0]]
        if verified:
            ratios = [a[0] / b[0] for a, b in verified]
            bounds = sum(not b[1] for _, b in verified)
            line += (f"\n{scenario}, time to a verified forget (training and stop checks until the check held), "
                     f"legato / guide: {statistics.fmean(ratios):.2f}× (worst {max(ratios):.2f}×; legato "
                     f"{statistics.fmean(a[0] for a, _ in verified):.1f} s, guide "
                     f"{statistics.fmean(b[0] for _, b in verified):.1f} s); verified: legato "
                     f"{sum(a[1] for a, _ in verified)}/{len(verified)}, guide {len(verified) - bounds}/{len(verified)}"
                     + (f" (a guide run that never verified counts its whole training and checks: for those {bounds} "
                        "the ratio is an upper bound)" if bounds else ""))
        out.append(line)
    return out


def _to_verified(row: dict) -> tuple[float, bool] | None:
    """(seconds until the stop check held, True), or for a run that never verified (its whole training and
    stop checks, False); None for a run without early stop."""
    if row.get("seconds_to_verified") is not None:
        return float(row["seconds_to_verified"]), True
    if row.get("stop_check_seconds") is None or not row.get("seconds"):
        return None
    return float(row["seconds"]) + float(row["stop_check_seconds"]), False


def collapse(mode: dict, out: Path) -> dict:
    """id_preservation (and id_target) every 100 steps up to 3× the budget, per method."""
    curves = {}
    cfg_mode = {**mode, "iterations": mode["collapse"]}
    with _pool(mode["workers"]) as pool:
        futures = {m: pool.submit(run_one, SCENARIOS["in-domain"](0), m, out / "collapse" / m, cfg_mode)
                   for m in mode["methods"]}
        for method, fut in futures.items():
            fut.result()
            log = [json.loads(x) for x in (out / "collapse" / method / "log.jsonl").read_text().splitlines()]
            curves[method] = [(r["step"], r["id_preservation"], r["id_target"]) for r in log
                              if "id_preservation" in r]
    plot_curves(curves, out / "collapse.png", "during training", budget=mode["iterations"])
    return curves


def plot_curves(curves: dict, path: Path, when: str, budget: int | None = None) -> None:
    """id_preservation and id_target against steps, one line per run (`curves`: name → [(step, pres, id)])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in curves.items():
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], label=name)
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], label=name)
    axes[0].set(title=f"id_preservation (↑) {when}", xlabel="step")
    axes[1].set(title=f"id_target (↓) {when}", xlabel="step")
    if budget is not None:
        for ax in axes:
            ax.axvline(budget, color="grey", ls=":")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _dial_one(spec: str, method: str, out: Path, mode: dict) -> dict:
    """Train one run, then sweep its dial: identity scores and the forgotten face's sharpness at each strength."""

    from legato.evaluation.quality import target_quality
    from legato.evaluation.sweep import DEFAULT_STRENGTHS, run_sweep
    from legato.synthfaces import load_generator
    from legato.unlearning.methods import load_result

    metrics = run_one(spec, method, out, mode)
    source = load_generator().eval().requires_grad_(False)
    result = load_result(out / "adapter", load_generator().eval().requires_grad_(False))
    saved = read_people(out)
    ws, held = saved["ws"], saved.get("held_out_ws")
    # judged by the backend's independent judge (run_sweep's default), as the run's own verdicts are
    sweep = run_sweep(source, result.unlearned, result.dial, ws, held, DEFAULT_STRENGTHS,
                      n_random=mode["n_random"], seed=0)
    for point in sweep["points"]:
        result.dial.strength = point["strength"]
        q = target_quality(source, result.unlearned, ws, n_ordinary=100)
        point["target_sharpness_percentile"] = q["target_sharpness_percentile"]
        point["target_plausible"] = q["target_plausible"]
    return {"spec": spec, "method": method, "threshold": sweep.get("threshold", metrics.get("threshold")),
            "trainable_params": metrics["trainable_params"], "points": sweep["points"]}


def dial_summary(points: list[dict], threshold: float | None) -> dict:
    """The dial's rules (`evaluation.sweep.dial_quality`: Spearman ρ, the largest step as a share of the whole
    fall, where the threshold is crossed, the lowest preservation, `dial_ok`), plus preservation at s = 1 and
    the share of strengths whose forgotten face is plausible."""
    from legato.evaluation.sweep import dial_quality

    q = dial_quality([p["strength"] for p in points], [p["id_target"] for p in points], threshold,
                     [p.get("id_preservation") for p in points])
    return {**q, "preservation_at_1": points[-1].get("id_preservation"),
            "plausible_fraction": sum(bool(p["target_plausible"]) for p in points) / len(points)}


def dial(mode: dict, out: Path) -> dict:
    """legato (time span), residual (output scale) and lora (LoRA scale) over s = 0, 0.1, …, 1 on the same
    in-domain people: one plot with the three curves (mean and spread) and `dial.md`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in DIAL_METHODS if m in mode["methods"]]
    jobs = [(i, m) for i in range(mode.get("dial_ids", 4)) for m in methods]
    with _pool(mode["workers"]) as pool:
        futures = [pool.submit(_dial_one, SCENARIOS["in-domain"](i), m, out / "dial" / f"{m}-{i}", mode)
                   for i, m in jobs]
        results = [f.result() for f in futures]
    (out / "dial.json").write_text(json.dumps(results, indent=1))
    colours = {"legato": "tab:blue", "residual": "tab:orange", "lora": "tab:green"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    lines = ["| method (dial) | Spearman ρ of id_target ↓ (−1: monotone) | largest step / whole fall (≤ 0.25) | "
             "crosses the threshold at s (0.3–0.7) | preservation at s = 1 | lowest preservation | "
             "plausible forgotten face along the dial | dial rules met (worst ρ) |",
             "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for m in methods:
        runs = [r for r in results if r["method"] == m]
        xs = [p["strength"] for p in runs[0]["points"]]
        for ax, key in zip(axes, ("id_target", "id_preservation", "target_sharpness_percentile"), strict=True):
            ys = torch.tensor([[p[key] for p in r["points"]] for r in runs], dtype=torch.float64)
            ax.plot(xs, ys.mean(0), color=colours[m], lw=2.2, label=f"{m} (n={len(runs)})")
            ax.fill_between(xs, ys.min(0).values, ys.max(0).values, color=colours[m], alpha=0.15)
        per = [dial_summary(r["points"], r["threshold"]) for r in runs]
        summary[m] = per

        def cell(key, fmt="{:.3f}", per=per):
            vals = [p[key] for p in per if p[key] is not None]
            if not vals:
                return "never"
            mean, half = ci95(vals)
            return fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.format(half)) + \
                (f" ({len(vals)}/{len(per)})" if len(vals) < len(per) else "")

        ok = sum(p["dial_ok"] for p in per)
        worst = max((p["spearman"] for p in per if p["spearman"] is not None), default=float("nan"))
        lines.append(f"| {m} | {cell('spearman')} | {cell('largest_step_fraction')} | "
                     f"{cell('crossing_strength', '{:.2f}')} | {cell('preservation_at_1')} | "
                     f"{cell('preservation_min')} | {cell('plausible_fraction', '{:.2f}')} | "
                     f"{ok}/{len(per)} ({worst:.3f}) |")
    threshold = results[0]["threshold"]
    if threshold is not None:
        axes[0].axhline(threshold, color="grey", ls=":", label="threshold")
    axes[0].set(title="id_target (↓) along the dial", xlabel="strength s")
    axes[1].set(title="id_preservation (↑) along the dial", xlabel="strength s")
    axes[2].set(title="forgotten face's sharpness (percentile of ordinary)", xlabel="strength s")
    axes[2].axhspan(2.5, 97.5, color="grey", alpha=0.08)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "dial.png", dpi=110)
    plt.close(fig)
    text = "\n".join(lines) + "\n"
    (out / "dial.md").write_text(text)
    print(text, flush=True)
    return {"table": text, "per_identity": summary}


# the reference's recipe where collapse can show: its 1×1 field (the keyed field leaves strangers alone by
# construction), its fixed step count (no early stop), its time dial, and its loss balance (λ_global 1)
_REFERENCE_RECIPE = {"field": "conv1x1", "early_stop": False, "dial": "time", "dial_calibration": "none"}
COLLAPSE_REFERENCE = {
    "legato": ("legato", _REFERENCE_RECIPE),
    "legato, no trajectory term": ("legato", {**_REFERENCE_RECIPE, "lambda_trajectory": 0.0}),
    "guide": ("guide", _REFERENCE_RECIPE),
    "lora": ("lora", _REFERENCE_RECIPE),
}


def collapse_reference(mode: dict, out: Path) -> dict:
    """Preservation and id_target against steps at λ_global = 1, up to `collapse_reference` steps."""
    cfg_mode = {**mode, "iterations": mode["collapse_reference"]}
    curves = {}
    folders = _collapse_folders(name for name, (method, _) in COLLAPSE_REFERENCE.items() if method in mode["methods"])
    with _pool(mode["workers"]) as pool:  # the variants of the methods asked for (`--methods`), all by default
        futures = {name: pool.submit(run_one, SCENARIOS["in-domain"](0), COLLAPSE_REFERENCE[name][0],
                                     out / "collapse_reference" / f"v{k}", cfg_mode, lambda_global_=1.0,
                                     **COLLAPSE_REFERENCE[name][1])
                   for name, k in folders.items()}
        for name, fut in futures.items():
            fut.result()
            log_path = out / "collapse_reference" / f"v{folders[name]}" / "log.jsonl"
            log = [json.loads(x) for x in log_path.read_text().splitlines()]
            curves[name] = [(r["step"], r["id_preservation"], r["id_target"]) for r in log if "id_preservation" in r]
    plot_curves(curves, out / "collapse_reference.png", "at λ_global = 1")
    (out / "collapse_reference.json").write_text(json.dumps(curves))
    collapse_reference_table(out, curves, folders)
    return curves


def _collapse_folders(names) -> dict[str, int]:
    """Each collapse variant's folder index (`v<k>` under `collapse_reference/`): its place in
    COLLAPSE_REFERENCE, whichever variants a run made."""
    index = {name: k for k, name in enumerate(COLLAPSE_REFERENCE)}
    return {name: index[name] for name in names}


def many_identities(mode: dict, out: Path) -> dict:
    """Forget N people one after another: legato as stacked named adapter sets, guide as cumulative tuning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("legato", "guide") if m in mode["methods"]]
    with _pool(mode["workers"]) as pool:
        futures = {m: pool.submit(_forget_many, m, mode, out) for m in methods}
        results = {m: f.result() for m, f in futures.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, pts in results.items():
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=method)
    axes[0].set(title="id_preservation (↑)", xlabel="identities forgotten")
    axes[1].set(title="fid_pre (↓)", xlabel="identities forgotten")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "many_identities.png", dpi=110)
    plt.close(fig)
    return results


def _forget_many(method: str, mode: dict, out: Path) -> list[tuple[int, float, float]]:
    from legato.evaluation.metrics import evaluate
    from legato.synthfaces import load_generator
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.run import unlearn

    base = load_generator()
    current = load_generator()
    pts = []
    for k in range(mode["many"]):
        cfg = UnlearnConfig.for_generator(base, method=method, iterations=mode["iterations"], eval_every=10_000)
        d = out / "many" / f"{method}-{k}"
        unlearn(current, SCENARIOS["random"](50 + k), d, cfg, overwrite=True, n_random=8, n_fid=64,
                progress=False, report=False, source=base, adapter_name=f"person{k}")
        if method == "guide":  # continue from the fine-tuned weights
            from safetensors.torch import load_file

            state = load_file(str(d / "adapter" / "finetuned_weights.safetensors"))
            current.load_state_dict(state, strict=False)
        target = load_file_ws(d)
        m = evaluate(base, current, target, None, n_random=mode["n_random"], n_fid=mode["n_fid"],
                     progress=False)
        pts.append((k + 1, m["id_preservation"], m["fid_pre"]))
        print(json.dumps({"many": method, "forgotten": k + 1, "id_preservation": m["id_preservation"],
                          "fid_pre": m["fid_pre"]}), flush=True)
    return pts


def load_file_ws(run_dir: Path) -> torch.Tensor:
    return read_people(run_dir)["ws"]


def controllability(out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*-legato/sweep.json"))]
    if not sweeps:
        return {}
    fig, ax = plt.subplots(figsize=(5, 4))
    curves = []
    for s in sweeps:
        xs = [p["strength"] for p in s["points"]]
        ys = [p["id_target"] for p in s["points"]]
        curves.append(ys)
        ax.plot(xs, ys, color="tab:blue", alpha=0.25)
    mean = [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]
    ax.plot(xs, mean, color="tab:blue", lw=2.5, label=f"mean of {len(curves)} identities")
    ax.set(xlabel="strength", ylabel="id_target (↓)", title="Controllability: forgetting vs strength")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "controllability.png", dpi=110)
    plt.close(fig)
    return {"identities": len(curves), "mean": mean,
            "spearman": [s.get("spearman") for s in sweeps]}


def ablations(mode: dict, out: Path) -> str:
    variants = {
        "default (SynthFaces: T=1.6, h=0.8, hidden 64, lr 1e-3, trajectory on)": {},
        "trajectory off": {"lambda_trajectory": 0.0},
        "trajectory as the reference code (one block, forgotten latent)": {"trajectory": "reference"},
        "reference structure (--preset reference: sums, its trajectory term, continuous yaw)": {"preset": "reference"},
        "step 0.2": {"step_size": 0.2},
        "step 0.4 (reference)": {"step_size": 0.4},
        "t_end 0.8": {"t_end": 0.8},
        "t_end 3.2": {"t_end": 3.2},
        "hidden 256 (reference)": {"hidden": 256},
    }
    lines = ["| variant | id_target ↓ | id_others ↓ | id_preservation ↑ | fid_pre ↓ | trainable params |",
             "|---|---|---|---|---|---|"]
    with _pool(mode["workers"]) as pool:
        futures = {name: [pool.submit(run_one, SCENARIOS["in-domain"](i), "legato", out / "ablations" / f"{v}-{i}",
                                      mode, **ov) for i in range(mode["ablate_ids"])]
                   for v, (name, ov) in enumerate(variants.items())}
        results = {name: [f.result() for f in fs] for name, fs in futures.items()}
    for name, ms in results.items():
        cells = []
        for k in ("id_target", "id_others", "id_preservation", "fid_pre"):
            m, h = ci95([x.get(k) for x in ms])
            cells.append(f"{m:.3f}" + ("" if math.isnan(h) else f" ± {h:.3f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ms[0]['trainable_params']:,} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    (out / "ablations.md").write_text(text)
    return text


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text}")
    return value


def _config_override(ap: argparse.ArgumentParser, item: str) -> tuple[str, object]:
    """`KEY=VALUE` → (key, value) for `UnlearnConfig.for_generator`, through the options layer
    (`legato.unlearning.options`: the CLI's names, the value typed like the setting's default); an unknown
    key or a value of the wrong type stops the run."""
    from legato.errors import InputError
    from legato.unlearning import options

    key, sep, text = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep:
        ap.error(f"--set {item}: expected KEY=VALUE with KEY a setting of `legato unlearn` (underscores)")
    try:
        value = options.parse(key, text)
    except InputError as e:
        ap.error(f"--set {item}: {e}")
    return ("lambda_global_" if key == "lambda_global" else key), value


def settings(argv: list[str] | None = None) -> tuple[argparse.Namespace, str, dict, list[str]]:
    """The parsed arguments, the tier's name, its settings (`mode`, with the command line's overrides) and the
    parts to run."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick version (default)")
    ap.add_argument("--standard", action="store_true", help="the standard tier: the README table, 8 people "
                    "per scenario, all six methods (make bench-standard, about 90 minutes on 2 cores)")
    ap.add_argument("--full", action="store_true", help="the full version")
    ap.add_argument("--dial-ids", type=int, default=None, help="people for the dial comparison")
    ap.add_argument("--collapse-steps", type=int, default=None, help="steps of the collapse runs at λ_global 1")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these parts: table collapse many controllability ablations dial "
                         "collapse-reference")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--scenarios", nargs="*", default=None, help=f"subset of {list(SCENARIOS)}")
    ap.add_argument("--methods", nargs="*", default=None, help=f"subset of {list(METHODS)}")
    ap.add_argument("--identities", type=int, default=None, help="identities per scenario")
    ap.add_argument("--iterations", type=int, default=None, help="training iterations per run")
    ap.add_argument("--lambda-global", type=_non_negative, default=None,
                    help="the global preservation weight (default: the generator's; SynthFaces 10)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="any other UnlearnConfig setting for the table's runs, e.g. n_global=4 or "
                         "lambda_adjacency=2 (repeatable)")
    ap.add_argument("--first-identity", type=int, default=0, help="index of the first identity per scenario")
    ap.add_argument("--n-random", type=int, default=None, help="random people for id_preservation")
    ap.add_argument("--n-fid", type=int, default=None, help="samples per FID")
    ap.add_argument("--eval-every", type=int, default=None, help="quick scores (collapse curve) every K steps")
    ap.add_argument("--render", type=Path, default=None, metavar="DIR",
                    help="run nothing: write the README / docs blocks of the finished run in DIR again")
    ap.add_argument("--update-docs", default=None, metavar="SECTION",
                    help="write the run's block into docs/benchmarks.md between <!-- bench:SECTION:start --> and "
                         "<!-- bench:SECTION:end --> (its plots into docs/images/)")
    ap.add_argument("--update-readme", action="store_true",
                    help="write the table and plots into README.md (between the bench markers) and docs/images/")
    ap.add_argument("--resume", action="store_true",
                    help="reuse runs already finished under --out with the same settings (an interrupted tier "
                         "picks up where it stopped)")
    ap.add_argument("--field", default=None, help="the table's adapter field (unlearn's --field; default: the "
                    "reference's conv1x1)")
    ap.add_argument("--gate-hidden", type=int, default=None, help="--field gated: the gate's width")
    ap.add_argument("--gate-space", default=None, help="--field keyed: latent | identity | embedding")
    ap.add_argument("--gate-floor", type=float, default=None, help="--field keyed: openness below this is 0")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="runs in parallel, one torch thread each (default: min(2, CPU count))")
    args = ap.parse_args(argv)
    name = "full" if args.full else "standard" if args.standard else "quick"
    mode = dict(MODES[name])
    if args.identities:
        mode["identities"] = args.identities
    if args.iterations:
        mode["iterations"] = args.iterations
    if args.dial_ids:
        mode["dial_ids"] = args.dial_ids
    if args.collapse_steps:
        mode["collapse_reference"] = args.collapse_steps
    for key in ("n_random", "n_fid", "eval_every"):
        if getattr(args, key) is not None:
            mode[key] = getattr(args, key)
    mode["adapter_options"] = {k: getattr(args, k) for k in ("field", "gate_hidden", "gate_space", "gate_floor")
                              if getattr(args, k) is not None}
    if args.lambda_global is not None:
        mode["adapter_options"]["lambda_global_"] = args.lambda_global
    for item in args.overrides:
        key, value = _config_override(ap, item)
        mode["adapter_options"][key] = value
    mode["scenarios"] = args.scenarios or list(SCENARIOS)
    mode["first"] = args.first_identity
    mode["methods"] = args.methods or list(METHODS)
    mode["workers"] = max(1, args.workers)
    mode["resume"] = args.resume
    parts = args.only or (["table", "controllability"] if name == "standard" else
                          ["table", "controllability", "collapse", "many", "ablations", "dial", "collapse-reference"])
    return args, name, mode, parts


def render(args) -> int:
    """Write the pages' blocks from a finished run's folder (`--render DIR`)."""
    out = args.render
    summary = json.loads((out / "summary.json").read_text())
    curves_file = out / "collapse_reference.json"
    if curves_file.is_file():  # the table again from the curves and the runs (its layout may have changed)
        curves = json.loads(curves_file.read_text())
        collapse_reference_table(out, curves, _collapse_folders(curves))
    write_blocks(args, summary, out)
    return 0


def write_blocks(args, summary: dict, out: Path) -> None:
    block = readme_block(summary, out, ROOT.parent / "docs" / "images" if args.update_readme else None)
    (out / "readme_section.md").write_text(block + "\n")
    if args.update_readme:
        update_readme(ROOT.parent / "README.md", block)
    if args.update_docs:
        update_docs(ROOT.parent / "docs" / "benchmarks.md", args.update_docs, summary, out)


def main() -> int:
    args, name, mode, parts = settings()
    if args.render is not None:
        return render(args)
    out = args.out or ROOT / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    summary = {"mode": name, "settings": mode, "machine": {"python": platform.python_version(),
               "torch": torch.__version__, "cpu_count": os.cpu_count(), "workers": mode["workers"],
               "threads_per_worker": 1, "processor": cpu_name(),
               "platform": platform.platform()},
               "command": "python " + " ".join(sys.argv), "provenance": provenance(),
               "parts": ["collapse_reference" if p == "collapse-reference" else p for p in parts]}
    t0 = time.perf_counter()
    if "table" in parts:
        rows: list[dict] = []
        main_table(mode, out, rows)
        summary["table"] = write_table(rows, out)
        print(summary["table"])
    if "controllability" in parts:
        summary["controllability"] = controllability(out)
    if "collapse" in parts:
        summary["collapse"] = collapse(mode, out)
    if "dial" in parts:
        summary["dial"] = dial(mode, out)
    if "collapse-reference" in parts:
        summary["collapse_reference"] = collapse_reference(mode, out)
    if "many" in parts:
        summary["many_identities"] = many_identities(mode, out)
    if "ablations" in parts:
        summary["ablations"] = ablations(mode, out)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_blocks(args, summary, out)
    shutil.rmtree(out / "many", ignore_errors=True)  # bulky intermediate runs
    print(f"wrote {out} in {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
