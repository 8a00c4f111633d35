"""The dial calibrations side by side on finished runs: each result with a dial (legato, residual, LoRA) is
loaded, measured once along its own scale with the loss's model, mapped by every design of
`unlearning.dial_calibration` (and by none), and swept with the judge over s = 0, 0.1, …, 1 as a run's report
does (5 views, 16 strangers). Training is not repeated: a calibration only changes what s means.

    python benchmarks/dial_calibrations.py benchmarks/results/table/runs --out DIR

Writes DIR/dial_calibrations.json (one row per run and design) and DIR/dial_calibrations.md (per method and
design: ρ, largest step, crossing, lowest preservation, runs meeting every rule of `sweep.dial_quality`).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_render import cpu_name, provenance, replace_block  # noqa: E402

DESIGNS = ("none", "loss-model", "image")
DIAL_METHODS = ("legato", "residual", "lora")
STRENGTHS = [i / 10 for i in range(11)]


def compare_run(run: Path, loss_model, judge) -> list[dict]:
    from legato.evaluation.sweep import run_sweep
    from legato.synthfaces import load_generator
    from legato.unlearning.dial_calibration import fit_map, measure
    from legato.unlearning.methods import load_result
    from legato.unlearning.run_folder import read_people

    config = json.loads((run / "config.json").read_text())
    method = config["config"]["method"]
    if method not in DIAL_METHODS:
        return []
    crossing = float(config["config"].get("dial_crossing", 0.5))
    gen = load_generator()
    source = copy.deepcopy(gen)
    for p in list(source.parameters()) + list(gen.parameters()):
        p.requires_grad_(False)
    loaded = load_result(run / "adapter", gen)
    people = read_people(run / "adapter")
    ws, held_out = people["ws"], people.get("held_out_ws")
    measured = measure(source, gen, loaded.dial, ws, loss_model)
    rows = []
    for design in DESIGNS:
        loaded.dial.strength_map = None if design == "none" else fit_map(measured, design, loss_model.threshold,
                                                                         crossing)
        result = run_sweep(source, gen, loaded.dial, ws, held_out, STRENGTHS, identity_model=judge, seed=0,
                           n_random=16)
        rows.append({"run": run.name, "method": method, "design": design,
                     "id_target": [round(p["id_target"], 4) for p in result["points"]],
                     **{k: result.get(k) for k in ("spearman", "largest_step_fraction", "crossing_strength",
                                                   "preservation_min", "dial_ok")}})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "id_target"}), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| method | calibration | runs | Spearman ρ (worst) | largest step / fall (worst) | crossing s (range) | "
             "lowest preservation | every dial rule met |", "|---|---|---|---|---|---|---|---|"]
    for method in DIAL_METHODS:
        for design in DESIGNS:
            sel = [r for r in rows if r["method"] == method and r["design"] == design]
            if not sel:
                continue
            rho = [r["spearman"] for r in sel if r["spearman"] is not None]
            step = [r["largest_step_fraction"] for r in sel if r["largest_step_fraction"] is not None]
            cross = [r["crossing_strength"] for r in sel if r["crossing_strength"] is not None]
            pres = [r["preservation_min"] for r in sel if r["preservation_min"] is not None]
            lines.append(
                f"| {method} | {design} | {len(sel)} | {statistics.fmean(rho):.3f} ({max(rho):.3f}) | "
                f"{statistics.fmean(step):.2f} ({max(step):.2f}) | "
                + (f"{statistics.fmean(cross):.2f} ({min(cross):.2f}–{max(cross):.2f})" if cross else "—")
                + f" | {min(pres):.3f} | {sum(bool(r['dial_ok']) for r in sel)}/{len(sel)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from legato.identity.registry import load

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="*", help="folders of finished runs, or folders holding them")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--render", action="store_true", help="measure nothing: put OUT/dial_calibrations.md into "
                                                         "docs/benchmarks.md (with --update-docs)")
    ap.add_argument("--update-docs", default=None, metavar="SECTION",
                    help="write the table into docs/benchmarks.md between <!-- bench:SECTION:start --> and "
                         "<!-- bench:SECTION:end -->")
    args = ap.parse_args()
    if args.render:
        _write_docs(args.update_docs, (args.out / "dial_calibrations.md").read_text())
        return 0
    here = provenance()
    torch.set_num_threads(1)
    folders = []
    for path in args.runs:
        folders += [path] if (path / "config.json").is_file() else sorted(p for p in path.iterdir()
                                                                           if (p / "config.json").is_file())
    loss_model, judge = load("synthfaces"), load("synthfaces-judge")
    rows = []
    for run in folders:
        rows += compare_run(run, loss_model, judge)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dial_calibrations.json").write_text(json.dumps(rows, indent=1))
    text = header(sys.argv, here, folders) + "\n" + table(rows)
    (args.out / "dial_calibrations.md").write_text(text)
    _write_docs(args.update_docs, text)
    print(text)
    return 0


def _write_docs(section: str | None, text: str) -> None:
    if section:
        page = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        replace_block(page, f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->", text)


def header(argv: list[str], here: dict, folders: list[Path]) -> str:
    """Where the table comes from: this command, and the runs it read (each benchmark run's provenance)."""
    sources = set()
    for run in folders:
        for parent in run.parents:
            if (parent / "summary.json").is_file():
                p = json.loads((parent / "summary.json").read_text()).get("provenance", {})
                sources.add(f"commit {p.get('commit', '?')} on {p.get('date', '?')}")
                break
    return (f"Generated by `python benchmarks/{Path(argv[0]).name} {' '.join(argv[1:])}` at commit "
            f"{here['commit']} on {here['date']} (generator sha256 {here['generator_sha256']}, judge "
            f"{here['judge_sha256']}) on {cpu_name()}, one torch thread, from {len(folders)} finished runs"
            + (f" (trained at {'; '.join(sorted(sources))})" if sources else "")
            + ". The sweep: s = 0, 0.1, …, 1, 5 views, 16 strangers, judged by `synthfaces-judge`; rules of "
              "`sweep.dial_quality` (ρ = −1, largest step ≤ ¼ of the fall, crossing in 0.3–0.7, preservation "
              "≥ 0.95 at every s).\n")


if __name__ == "__main__":
    raise SystemExit(main())
