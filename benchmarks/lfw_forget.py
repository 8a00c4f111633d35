"""Forgetting a person of `lfw-faces`, every method side by side, judged by dlib, and attacked.

    .venv/bin/python benchmarks/lfw_forget.py RUN [RUN ...] [--attack-steps 300] [--out DIR] [--grid PNG]

Each RUN is a folder written by `legato unlearn --generator lfw-faces --identity NAME --method M`. For each,
and for the untouched source, the textual-inversion attack (`legato.lfwfaces.attack`) fits a fresh class
embedding to the person's training photos (LFW on disk) through the model and samples from it; dlib then
says how often the person comes back. Prints a markdown table of the runs' own metrics beside the attack's
recognition rate, and writes `summary.json` (with the commit and date) to `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import torch
from lfw_world import _commit  # benchmarks/ is the script's folder, so on sys.path

ROOT = Path(__file__).resolve().parents[1]


def _spearman(metrics: dict) -> float | None:
    """Spearman ρ of the person's recognition rate over the dial's strengths (−1: it only ever falls)."""
    from scipy.stats import spearmanr

    sweep = metrics.get("sweep")
    if not sweep:
        return None
    return float(spearmanr([p["strength"] for p in sweep], [p["recognition"] for p in sweep]).statistic)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--merge", nargs="+", type=Path, default=None,
                        help="Print one table from earlier summary.json files (no attack is run).")
    parser.add_argument("--attack-steps", type=int, default=300)
    parser.add_argument("--no-source", action="store_true", help="Skip attacking the untouched source.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lfw_forget")
    parser.add_argument("--grid", type=Path, default=None, help="A PNG: a row of attacked samples per model.")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        print_table({**parts[0], "commit": ", ".join(sorted({p["commit"] for p in parts})),
                     "rows": [r for p in parts for r in p["rows"]]})
        return
    if not args.runs:
        parser.error("give at least one run folder, or --merge")
    torch.set_num_threads(1)

    from legato.evaluation.images import save_grid
    from legato.lfwfaces.attack import embedding_attack
    from legato.lfwfaces.data import prepare
    from legato.lfwfaces.judge import DlibJudge
    from legato.lfwfaces.unlearn import load_result
    from legato.lfwfaces.world import load_world

    judge = DlibJudge.shipped()
    faces = prepare(progress=False)
    x_train, y_train = faces.tensors(held_out=False)
    rows, grid = [], []
    targets = [None] * (not args.no_source) + list(args.runs)  # None: the untouched source
    for folder in targets:
        t0 = time.time()
        if folder is None:
            person_name = json.loads((args.runs[0] / "metrics.json").read_text())["person"]
            world = load_world()
            unet, person, metrics = world.unet, world.label_of(person_name), {"method": "source (no forgetting)"}
        else:
            world, unet, person = load_result(folder)
            metrics = json.loads((folder / "metrics.json").read_text())
        photos = x_train[y_train == person]
        metrics["dial_spearman"] = _spearman(metrics)
        attack = embedding_attack(world, unet, person, photos, steps=args.attack_steps, judge=judge)
        grid.append(attack.pop("images")[:12])
        rows.append({"run": str(folder) if folder else "source", "method": metrics["method"],
                     "person": world.people[person], "photos_attacked_with": int(photos.shape[0]),
                     "attack": attack, "attack_seconds": round(time.time() - t0, 1),
                     **{k: metrics.get(k) for k in ("recognition_before", "recognition_after", "recognition_after_ci",
                                                    "face_found_after", "others_recognition_before",
                                                    "others_recognition_after", "others_drop", "others_drop_ci",
                                                    "fid_dlib_others_before", "fid_dlib_others_after",
                                                    "trained_params", "train_seconds", "verdicts",
                                                    "dial_spearman")}})
        print(json.dumps(rows[-1], default=str), flush=True)
    summary = {"commit": _commit(), "date": date.today().isoformat(), "attack_steps": args.attack_steps,
               "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if args.grid:
        save_grid(torch.cat(grid), args.grid, nrow=12)
    print_table(summary)


def print_table(summary: dict) -> None:
    rows = summary["rows"]
    print(f"\nlfw-faces, forgetting {rows[-1]['person']} (commit {summary['commit']}, {summary['date']}; "
          f"attack: {summary['attack_steps']} steps)\n")
    print("| method | trained params | train s | recognised before → after (95% CI) | face found | "
          "others recognised before → after | FID_dlib others before → after | dial ρ | after the attack |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["method"].startswith("source"):
            print(f"| {r['method']} | — | — | — | — | — | — | — | {_pct(r['attack'].get('recognition'))} |")
            continue
        lo, hi = r["recognition_after_ci"]
        if r.get("dial_spearman") is None and Path(r["run"], "metrics.json").is_file():
            r["dial_spearman"] = _spearman(json.loads(Path(r["run"], "metrics.json").read_text()))
        print(f"| {r['method']} | {r['trained_params']:,} | {r['train_seconds']} | "
              f"{_pct(r['recognition_before'])} → {_pct(r['recognition_after'])} ({_pct(lo)}–{_pct(hi)}) | "
              f"{_pct(r['face_found_after'])} | {_pct(r['others_recognition_before'])} → "
              f"{_pct(r['others_recognition_after'])} | {r['fid_dlib_others_before']:.3f} → "
              f"{r['fid_dlib_others_after']:.3f} | {r['dial_spearman']:.2f} | "
              f"{_pct(r['attack'].get('recognition'))} |")


if __name__ == "__main__":
    main()
