"""Forgetting many people on SynthFaces: one set for all (simultaneous), people added in steps (continual,
`--extend`, legato and guide), and the inference cost of one set against per-person stacked sets.

    python benchmarks/many_identities.py [--sizes 1 10 50 200] [--continual-step 10 --continual-max 200]

Writes results/many/summary.json, summary.md and many_identities.png. With --update-docs the rows it measured
are merged into docs/data/many_identities.json (the measured series of every run, each row naming its
generator) and the plots in docs/images are drawn from that file. Finished runs are kept under results/many/
and reused by a rerun with the same settings (--resume).
People: held-out SynthFaces persons (`person:N`, one photo forgotten, four held out for id_others) up to
`--photo-people`, random latents (`seed:N`, no other photos) beyond; preservation is measured on random
people not in the list.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "many"
MEASURED = ROOT.parent / "docs" / "data" / "many_identities.json"
FIRST_PERSON = 1_000_300  # held-out SynthFaces people (seeds ≥ 1,000,000 are never trained on)
FIRST_SEED = 50_000


def people(n: int, photo_people: int, first: int = 0) -> list[str]:
    return [f"person:{FIRST_PERSON + i}" if i < photo_people else f"seed:{FIRST_SEED + i}"
            for i in range(first, first + n)]


def generator_tag() -> str:
    """The first 12 hex digits of the sha256 of the generator file the runs load (which cycle they ran on)."""
    import hashlib

    from legato.synthfaces.generator import WEIGHTS

    return hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()[:12]


def iterations_for(n: int, base: int, per_person: float, cap: int) -> int:
    """A budget that grows with the people a run must take in (each step trains on 4 of them)."""
    return int(min(cap, base + per_person * max(0, n - 1)))


# objective and field variants tried on one N (`--only variants`): name -> (UnlearnConfig overrides, what it tests)
VARIANTS = {
    "default": ({}, "the SynthFaces defaults (1×1 field, hidden 64, λ_global 10, 4 people a step)"),
    "global-3": ({"lambda_global_": 3.0}, "the global term weighed 3 instead of 10"),
    "global-1": ({"lambda_global_": 1.0}, "the global term weighed 1 (≈ λ·k/N: the local term summed)"),
    "hidden-256": ({"hidden": 256}, "a 4× wider field"),
    "context": ({"field": "context"}, "the 1×1 field plus the image's mean (whose face this pixel is in)"),
    "gated": ({"field": "gated"}, "the 1×1 field switched per sample by an MLP on the site's latent, taught "
                                  "who is forgotten by the membership term"),
    "gated-gate-256": ({"field": "gated", "gate_hidden": 256}, "the gated field with a 256-wide gate"),
    "keyed": ({"field": "keyed"}, "the 1×1 field switched by the latent's distance to the forgotten latents, "
                                  "which it stores"),
}
MANY_FIELDS = ["conv1x1", "context", "gated", "keyed"]


def run(name: str, specs: list[str], method: str, iterations: int, args, extend: Path | None = None,
        overrides: dict | None = None) -> dict:
    from legato.synthfaces import load_generator
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.run import unlearn

    out = OUT / "runs" / name
    list_file = OUT / "lists" / f"{name}.txt"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("\n".join(specs) + "\n")
    if args.resume and (out / "metrics.json").is_file():
        saved = json.loads((out / "metrics.json").read_text())
        if saved.get("iterations_asked") == iterations and saved["identity"].get("people", [specs[0]]) == specs:
            print(f"{name}: reused", flush=True)
            return saved
    gen = load_generator()
    cfg = UnlearnConfig.for_generator(gen, method=method, iterations=iterations, eval_every=max(100, iterations // 4),
                                      **(overrides or {}))
    t0 = time.perf_counter()
    metrics = unlearn(gen, f"@{list_file}", out, cfg, overwrite=True, n_random=args.n_random, n_fid=args.n_fid,
                      progress=False, report=False, extend=extend)
    metrics["wall_seconds"] = round(time.perf_counter() - t0, 1)
    metrics["iterations_asked"] = iterations
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    keys = ("people", "forgotten_fraction", "forgotten_fraction_previous", "id_others_forgotten_fraction",
            "id_target", "id_others", "id_preservation", "fid_pre", "seconds")
    print(name, json.dumps({k: metrics.get(k) for k in keys}), flush=True)
    return metrics


def row(kind: str, method: str, n: int, m: dict) -> dict:
    return {"kind": kind, "method": method, "people": n, "iterations": m.get("iterations_asked"),
            "forgotten_fraction": m.get("forgotten_fraction", float(m["id_target"] < m["threshold"])),
            "forgotten_fraction_previous": m.get("forgotten_fraction_previous"),
            "id_target": m.get("id_target"), "id_others": m.get("id_others"),
            "id_others_forgotten_fraction": m.get("id_others_forgotten_fraction"),
            "id_preservation": m.get("id_preservation"), "fid_pre": m.get("fid_pre"), "seconds": m.get("seconds"),
            "generator": generator_tag()}


def row_key(r: dict) -> tuple:
    """Rows with the same key measure the same thing: a new one replaces an old one in the measured file."""
    return (r["kind"], r["method"], r.get("field", "conv1x1"), r.get("variant"), r["people"], r.get("generator"))


def merge_measured(rows: list[dict], cost: dict | None, path: Path = MEASURED) -> dict:
    """`path`'s rows with `rows` merged in (same key: the new row wins) and, when measured, the new inference
    costs; written back one row per line."""
    data = json.loads(path.read_text()) if path.is_file() else {"about": "", "generators": {}, "rows": [],
                                                                  "inference": {}}
    tag = generator_tag()
    new = [{**r, "generator": r.get("generator") or tag} for r in rows]
    keys = {row_key(r) for r in new}
    data["rows"] = [r for r in data["rows"] if row_key(r) not in keys] + new
    if cost is not None:  # stored as ratios to the source of the same run; groups not measured are kept
        ratios = {k: {n: v / cost["source"] for n, v in group.items()} for k, group in cost.items()
                  if isinstance(group, dict) and group}
        data["inference"] = {**data.get("inference", {}), **ratios, "source": 1.0, "generator": tag}
    lines = ["{", f' "about": {json.dumps(data["about"], ensure_ascii=False)},',
             f' "generators": {json.dumps(data["generators"])},', ' "rows": [',
             ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in data["rows"]), " ],",
             f' "inference": {json.dumps(data["inference"])}', "}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return data


def simultaneous(args) -> list[dict]:
    """One set for all N people, for each of `--fields` (conv1x1: the SynthFaces default)."""
    rows = []
    for field in args.fields:
        for n in args.sizes:
            its = iterations_for(n, args.base_iterations, args.per_person, args.max_iterations)
            name = f"simultaneous-{n}" if field == "conv1x1" else f"simultaneous-{field}-{n}"
            m = run(name, people(n, args.photo_people), "legato", its, args, overrides={"field": field})
            rows.append({**row("simultaneous", "legato", n, m), "field": field})
    return rows


def variants(args) -> list[dict]:
    """Each of `--variants` on the same `--variant-people` people, with the simultaneous budget."""
    n = args.variant_people
    its = iterations_for(n, args.base_iterations, args.per_person, args.max_iterations)
    rows = []
    for name in args.variants:
        overrides, _ = VARIANTS[name]
        m = run(f"variant-{n}-{name}", people(n, args.photo_people), "legato", its, args, overrides=overrides)
        rows.append({**row("variant", "legato", n, m), "variant": name})
    return rows


def stacked_trained(args) -> list[dict]:
    """Per-person sets: one legato set per person (`--stacked-iterations` each; one person is forgotten
    within a few steps), then the first k of them stacked on one generator and evaluated as one model."""
    from legato.evaluation.metrics import evaluate
    from legato.inversion.sources import resolve_identity
    from legato.ode.bundle import load_bundle
    from legato.synthfaces import load_generator
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.run import people_scores, unlearn

    k_max = max(args.stacked_people)
    specs = people(k_max, args.photo_people)
    folder = OUT / "runs" / "stacked"
    for i, spec in enumerate(specs):
        run_dir = folder / f"person-{i}"
        if args.resume and (run_dir / "metrics.json").is_file():
            continue
        gen = load_generator()
        cfg = UnlearnConfig.for_generator(gen, method="legato", iterations=args.stacked_iterations,
                                          eval_every=args.stacked_iterations)
        m = unlearn(gen, spec, run_dir, cfg, overwrite=True, n_random=4, n_fid=0, progress=False, report=False)
        print(f"stacked person {i} ({spec}): id_target {m['id_target']:.3f}", flush=True)
    source = load_generator()
    list_file = OUT / "lists" / "stacked.txt"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("\n".join(specs) + "\n")
    everyone = resolve_identity(f"@{list_file}", source, seed=0,
                                refine_steps=source.unlearning_defaults["refine_steps"])
    rows = []
    for k in sorted(args.stacked_people):
        saved = folder / f"stack-{k}.json"
        if args.resume and saved.is_file():
            rows.append(row("stacked", "legato", k, json.loads(saved.read_text())))
            continue
        g = load_generator()
        for i in range(k):
            load_bundle(folder / f"person-{i}" / "adapter", g, name=f"person-{i}")
        g.requires_grad_(False)
        ident = everyone.subset(k)
        m = evaluate(source, g, ident.ws, ident.held_out_ws, n_random=args.n_random, n_fid=args.n_fid, seed=0,
                     progress=False)
        m.update(people_scores(m, ident, n_previous=0) if k > 1 else
                 {"people": 1, "forgotten_fraction": float(m["id_target"] < m["threshold"])})
        m["iterations_asked"] = args.stacked_iterations
        m["seconds"] = None
        print(f"stacked {k}", json.dumps({key: m.get(key) for key in ("forgotten_fraction", "id_target",
                                                                      "id_preservation", "fid_pre")}), flush=True)
        saved.write_text(json.dumps(m, indent=2))
        rows.append(row("stacked", "legato", k, m))
    return rows


def continual(args, method: str) -> list[dict]:
    rows, previous = [], None
    for n in range(args.continual_step, args.continual_max + 1, args.continual_step):
        specs = people(args.continual_step, args.photo_people, first=n - args.continual_step)
        gated = method == "legato" and args.continual_field != "conv1x1"
        name = f"continual-{method}-{args.continual_field}-{n}" if gated else f"continual-{method}-{n}"
        m = run(name, specs, method, args.continual_iterations, args, extend=previous,
                overrides={"field": args.continual_field} if gated else None)
        previous = OUT / "runs" / name
        rows.append({**row("continual", method, n, m), **({"field": args.continual_field} if gated else {})})
    return rows


@torch.no_grad()
def inference_cost(args) -> dict:
    """Seconds per image: the source, one adapter set (whatever N it forgets), and k stacked per-person sets."""
    from legato.ode import attach
    from legato.synthfaces import load_generator

    torch.set_num_threads(1)
    gen = load_generator()
    settings = dict(hidden=64, field="conv1x1", t_end=1.6, step_size=0.8, method="euler")
    ws = gen.mapping(torch.randn(16, gen.z_dim, generator=torch.Generator().manual_seed(0)))
    cams = gen.views(1).expand(16, -1)

    def per_image(model) -> float:
        model.synthesis(ws, cams)  # warm-up
        times = []
        for _ in range(args.timing_repeats):
            t0 = time.perf_counter()
            model.synthesis(ws, cams)
            times.append((time.perf_counter() - t0) / ws.shape[0])
        return statistics.median(times)

    result = {"source": per_image(gen), "stacked": {}}
    trained = {n: OUT / "runs" / f"simultaneous-{n}" / "adapter" for n in args.sizes}
    from legato.unlearning.methods import load_result

    one_set = {}
    for n, folder in trained.items():
        if (folder / "adapter_config.json").is_file():
            g = load_generator()
            load_result(folder, g)
            one_set[n] = per_image(g)
    result["one_set"] = one_set
    gated = {}  # the gated field: one small MLP more per site
    for n in args.sizes:
        folder = OUT / "runs" / f"simultaneous-gated-{n}" / "adapter"
        if (folder / "adapter_config.json").is_file():
            g = load_generator()
            load_result(folder, g)
            gated[n] = per_image(g)
    result["one_set_gated"] = gated
    keyed = {}  # the keyed field: its gate compares each latent with N stored ones (random keys: timing only)
    for n in args.sizes:
        g = load_generator()
        keyed_set = attach(g, g.adapter_sites(), name="keyed", **{**settings, "field": "keyed"})
        people_ws = g.mapping(torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(1)))
        keyed_set.set_gate_keys(keyed_set.site_conditions(
            lambda g=g, people_ws=people_ws: g.synthesis(people_ws, g.views(1).expand(people_ws.shape[0], -1))))
        keyed[n] = per_image(g)
    result["one_set_keyed"] = keyed
    for k in args.stacked:
        g = load_generator()
        for i in range(k):
            attach(g, g.adapter_sites(), name=f"person{i}", **settings)
        result["stacked"][k] = per_image(g)
    return result


SERIES_STYLE = {"simultaneous": ("o-", "one legato set, all at once"),
                "continual": ("s--", "added 10 at a time (--extend)"),
                "stacked": ("d-.", "one legato set per person, stacked")}
FIELD_COLOUR = {"conv1x1": "tab:blue", "context": "tab:purple", "gated": "tab:orange", "keyed": "tab:green"}


def series_label(kind: str, method: str, field: str, generator: str, generators: dict,
                 round_iterations: int | None = None) -> str:
    if method == "guide":
        label = "guide, fine-tuned cumulatively" if kind == "continual" else f"guide, {kind}"
    else:
        label = SERIES_STYLE[kind][1] if kind != "continual" else "legato, " + SERIES_STYLE[kind][1]
        label += f", --field {field}" if field != "conv1x1" else ""
    label += f", {round_iterations} it. a round" if round_iterations else ""
    return f"{label} [{generators.get(generator, generator or 'generator ?')}]"


def plot(rows: list[dict], cost: dict, path: Path, generators: dict | None = None) -> None:
    """Forgotten fraction and preservation against N, one line per series (kind, method, field, generator),
    and the inference cost per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generators = generators or {}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] in SERIES_STYLE:
            rounds = r.get("iterations") if r["kind"] == "continual" else None  # a round's budget sets the series
            series.setdefault((r["kind"], r["method"], r.get("field", "conv1x1"), r.get("generator"), rounds),
                              []).append(r)
    for (kind, method, field, generator, rounds), sel in sorted(series.items(), key=lambda kv: str(kv[0])):
        sel = sorted(sel, key=lambda r: r["people"])
        style = "^:" if method == "guide" else SERIES_STYLE[kind][0]
        colour = "tab:red" if method == "guide" else "tab:brown" if kind == "stacked" else FIELD_COLOUR.get(field)
        label = series_label(kind, method, field, generator, generators, rounds)
        n = [r["people"] for r in sel]
        hollow = {"markerfacecolor": "none"} if rounds is not None and rounds < 300 else {}  # a smaller budget
        axes[0].plot(n, [r["forgotten_fraction"] for r in sel], style, color=colour, label=label, **hollow)
        axes[1].plot(n, [r["id_preservation"] for r in sel], style, color=colour, label=label, **hollow)
    axes[0].axhline(0.95, color="grey", lw=0.8, ls=":")
    axes[0].set(title="people forgotten (id_target < threshold)", xlabel="people forgotten so far (N)",
                ylabel="fraction", ylim=(-0.02, 1.02))
    axes[1].axhline(0.9, color="grey", lw=0.8, ls=":")
    axes[1].set(title="preservation of people not forgotten", xlabel="N", ylabel="id_preservation")
    for ax in axes[:2]:
        ax.set_xscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    src = cost.get("source", 1.0)
    groups = [("stacked", "d-.", "tab:brown", "k stacked per-person sets"),
              ("one_set", "o-", FIELD_COLOUR["conv1x1"], "one set forgetting N"),
              ("one_set_gated", "o-", FIELD_COLOUR["gated"], "one gated set forgetting N"),
              ("one_set_keyed", "o-", FIELD_COLOUR["keyed"], "one keyed set forgetting N")]
    for key, style, colour, label in groups:
        if cost.get(key):
            pts = sorted(cost[key].items(), key=lambda kv: int(kv[0]))
            axes[2].plot([int(k) for k, _ in pts], [v / src for _, v in pts], style, color=colour, label=label)
    axes[2].set(title="inference time per image (× the source)", xlabel="people (or sets)", ylabel="× source")
    axes[2].legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plot_variants([r for r in rows if r["kind"] == "variant"], path.with_name("many_variants.png"))


def plot_variants(rows: list[dict], path: Path) -> None:
    """Forgotten fraction against preservation, one point per variant: the trade-off they sit on."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for r in rows:
        ax.plot(r["id_preservation"], r["forgotten_fraction"], "o", ms=8)
        ax.annotate(r["variant"], (r["id_preservation"], r["forgotten_fraction"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=9)
    ax.axvline(0.9, color="grey", lw=0.8, ls=":")
    ax.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax.fill_between([0.9, 1.0], 0.95, 1.02, color="green", alpha=0.08, label="the goal (≥ 95% forgotten, ≥ 0.9 kept)")
    n = rows[0]["people"]
    ax.set(title=f"{n} people in one set: forgetting against preservation", xlabel="preservation (id_preservation)",
           ylabel="fraction forgotten", ylim=(-0.02, 1.04))
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(rows: list[dict], cost: dict) -> str:
    def f(v, spec=".3f"):
        return "—" if v is None else format(v, spec)

    lines = ["| how | method | N | iterations | forgotten | earlier people still forgotten | id_others "
             "(forgotten) | preservation | fid_pre | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        how = f"{r['kind']}: {r['variant']}" if r.get("variant") else r["kind"]
        how += f" ({r['field']})" if r.get("field", "conv1x1") != "conv1x1" else ""
        lines.append(f"| {how} | {r['method']} | {r['people']} | {r['iterations']} | "
                     f"{f(r['forgotten_fraction'], '.0%')} | {f(r['forgotten_fraction_previous'], '.0%')} | "
                     f"{f(r['id_others'])} ({f(r['id_others_forgotten_fraction'], '.0%')}) | "
                     f"{f(r['id_preservation'])} | {f(r['fid_pre'], '.2f')} | {f(r['seconds'], '.0f')} |")
    src = cost["source"]
    lines += ["", "| inference, per image | × source |", "|---|---|"]
    for n, v in sorted(cost["one_set"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| one set forgetting {n} | {v / src:.2f} |")
    for n, v in sorted(cost.get("one_set_gated", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"| one gated set forgetting {n} | {v / src:.2f} |")
    for n, v in sorted(cost.get("one_set_keyed", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"| one keyed set forgetting {n} | {v / src:.2f} |")
    for k, v in sorted(cost["stacked"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {k} stacked per-person sets | {v / src:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 10, 50, 200])
    ap.add_argument("--fields", nargs="*", default=["conv1x1", "gated"], choices=MANY_FIELDS,
                    help="adapter fields of the simultaneous series")
    ap.add_argument("--photo-people", type=int, default=10, help="people given by photos (the rest: seed:N)")
    ap.add_argument("--base-iterations", type=int, default=300)
    ap.add_argument("--per-person", type=float, default=10.0, help="extra iterations per additional person")
    ap.add_argument("--max-iterations", type=int, default=1500)
    ap.add_argument("--continual-step", type=int, default=10)
    ap.add_argument("--continual-max", type=int, default=200)
    ap.add_argument("--continual-iterations", type=int, default=300)
    ap.add_argument("--continual-methods", nargs="*", default=["legato", "guide"])
    ap.add_argument("--continual-field", default="conv1x1", choices=MANY_FIELDS,
                    help="the adapter field of the legato continual series")
    ap.add_argument("--stacked", type=int, nargs="*", default=[1, 2, 5, 10, 20])
    ap.add_argument("--timing-repeats", type=int, default=5)
    ap.add_argument("--variant-people", type=int, default=50)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--stacked-people", type=int, nargs="*", default=[1, 2, 5, 10],
                    help="stacks of trained per-person sets to evaluate (--only stacked)")
    ap.add_argument("--stacked-iterations", type=int, default=100)
    ap.add_argument("--n-random", type=int, default=32)
    ap.add_argument("--n-fid", type=int, default=128)
    ap.add_argument("--only", nargs="*", default=["simultaneous", "continual", "cost"],
                    choices=["simultaneous", "continual", "cost", "variants", "stacked"])
    ap.add_argument("--resume", action="store_true", help="reuse finished runs under results/many/")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/many")
    ap.add_argument("--update-docs", action="store_true", help="write docs/images/many_identities.png")
    args = ap.parse_args()
    OUT = args.out or OUT
    torch.set_num_threads(int(os.environ.get("LEGATO_THREADS", "1")))
    OUT.mkdir(parents=True, exist_ok=True)
    summary_path = OUT / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    def rerun(r: dict) -> bool:
        part = {"variant": "variants"}.get(r["kind"], r["kind"])
        same_series = r["method"] in args.continual_methods and (
            r["method"] != "legato" or r.get("field", "conv1x1") == args.continual_field)
        return part in args.only and (r["kind"] != "continual" or same_series)

    rows = [r for r in summary.get("rows", []) if not rerun(r)]  # the parts not rerun are kept
    t0 = time.perf_counter()
    if "simultaneous" in args.only:
        rows += simultaneous(args)
        summary_path.write_text(json.dumps({**summary, "rows": rows}, indent=2))
    if "variants" in args.only:
        rows += variants(args)
        summary_path.write_text(json.dumps({**summary, "rows": rows}, indent=2))
    if "stacked" in args.only:
        rows += stacked_trained(args)
        summary_path.write_text(json.dumps({**summary, "rows": rows}, indent=2))
    if "continual" in args.only:
        for method in args.continual_methods:
            rows += continual(args, method)
            summary_path.write_text(json.dumps({**summary, "rows": rows}, indent=2))
    cost = inference_cost(args) if "cost" in args.only else summary.get("inference", {"source": 1, "one_set": {},
                                                                                           "stacked": {}})
    summary = {"rows": rows, "inference": cost, "command": "python " + " ".join(sys.argv),
               "seconds": round(time.perf_counter() - t0, 1)}
    summary_path.write_text(json.dumps(summary, indent=2))
    (OUT / "summary.md").write_text(markdown(rows, cost))
    print(markdown(rows, cost))
    if args.update_docs:  # every measured series, this run's merged in
        measured = merge_measured(rows, cost if "cost" in args.only else None)
        plot(measured["rows"], measured["inference"], ROOT.parent / "docs" / "images" / "many_identities.png",
             measured["generators"])
    else:
        plot(rows, cost, OUT / "many_identities.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
