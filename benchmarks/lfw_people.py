"""Forgetting people of `lfw-faces` one at a time, every method, judged by dlib: the README's lfw table.

    .venv/bin/python benchmarks/lfw_people.py run --people P1 P2 … --methods legato embedding … --out DIR
    .venv/bin/python benchmarks/lfw_people.py table DIR

`run` writes, per person and method, the run folder `DIR/PERSON/METHOD/` (what `legato unlearn --generator
lfw-faces --identity PERSON --method METHOD` writes, with the library's defaults), `METHOD.sweep.json` (the
dial: the person's recognition at s = 0, 0.25, …, 1) and `METHOD.attack.json` (the textual-inversion
attack on the result, with LFW's training photos of the person). What is already there is kept, so an
interrupted run picks up where it stopped and several `run`s on other people can share one DIR. The
embedding edit's attack is the source's: the attack writes a fresh embedding row, which is all the edit
changed. `table` prints mean ± 95% t-interval over the people per method, with the commit, date and CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import date
from pathlib import Path

import torch
from lfw_world import _commit  # benchmarks/ is the script's folder, so on sys.path
from run import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DIAL = (0.0, 0.25, 0.5, 0.75, 1.0)
ATTACK_STEPS, ATTACK_SAMPLES, DIAL_SAMPLES = 150, 32, 24


def _run_one(out: Path, person: str, method: str, judge, photos_of) -> None:
    from legato.lfwfaces.attack import embedding_attack
    from legato.lfwfaces.erase import EraseConfig
    from legato.lfwfaces.unlearn import load_result, run, sweep

    folder = out / person / method
    if not (folder / "metrics.json").is_file():
        t0 = time.time()
        m = run(folder, person, EraseConfig(method=method), overwrite=folder.exists(), progress=False,
                judge=judge)
        print(f"{person} {method}: recognised {m['recognition_before']:.2f} → {m['recognition_after']:.2f}, "
              f"others {m['others_recognition_before']:.2f} → {m['others_recognition_after']:.2f}, "
              f"{time.time() - t0:.0f} s", flush=True)
    dial_file = out / person / f"{method}.sweep.json"
    if not dial_file.is_file():
        t0 = time.time()
        rows = sweep(folder, DIAL, n=DIAL_SAMPLES, judge=judge)
        record = {"rows": rows, "seconds": round(time.time() - t0, 1), "commit": _commit()}
        dial_file.write_text(json.dumps(record, indent=1) + "\n")
    attack_file = out / person / f"{method}.attack.json"
    if not attack_file.is_file():
        t0 = time.time()
        world, unet, p = load_result(folder)
        if method == "embedding":  # the attack's fresh row replaces the edited one: the source is attacked
            from legato.lfwfaces.world import load_world

            world = load_world()
            unet = world.unet
        a = embedding_attack(world, unet, p, photos_of(p), steps=ATTACK_STEPS, n_samples=ATTACK_SAMPLES,
                             judge=judge)
        a.pop("images")
        attack_file.write_text(json.dumps({**a, "seconds": round(time.time() - t0, 1)}, indent=1) + "\n")


def cmd_run(args) -> None:
    torch.set_num_threads(1)
    from legato.lfwfaces.data import prepare
    from legato.lfwfaces.judge import DlibJudge

    judge = DlibJudge.shipped()
    faces = prepare(progress=False)
    x_train, y_train = faces.tensors(held_out=False)
    for person in args.people:
        for method in args.methods:
            _run_one(args.out, person, method, judge, lambda p: x_train[y_train == p])


def _spearman(rows: list[dict]) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr([r["strength"] for r in rows], [r["recognition"] for r in rows]).statistic
    return float(rho) if not math.isnan(rho) else 0.0  # a flat dial (already 0 everywhere) has no order


def _mean_ci(values: list[float]) -> tuple[float, float, int]:
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan"), n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t.ppf(0.975, n - 1) * sd / math.sqrt(n), n


def collect(out: Path) -> dict[str, list[dict]]:
    by_method: dict[str, list[dict]] = {}
    for metrics_file in sorted(out.glob("*/*/metrics.json")):
        folder = metrics_file.parent
        m = json.loads(metrics_file.read_text())
        dial = folder.parent / f"{folder.name}.sweep.json"
        attack = folder.parent / f"{folder.name}.attack.json"
        row = {"person": m["person"], "method": m["method"], "metrics": m,
               "dial": json.loads(dial.read_text()) if dial.is_file() else None,
               "attack": json.loads(attack.read_text()) if attack.is_file() else None}
        by_method.setdefault(m["method"], []).append(row)
    return by_method


def _cell(values: list[float], fmt: str = "{:.0f}", scale: float = 100.0) -> str:
    if not values:
        return "—"
    mean, half, _n = _mean_ci([v * scale for v in values])
    return fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.format(half))


def table(out: Path) -> str:
    by_method = collect(out)
    order = [m for m in ("legato", "residual", "lora", "finetune", "embedding") if m in by_method]
    rows = [r for m in order for r in by_method[m]]
    commits = sorted({(r["dial"] or {}).get("commit", "") for r in rows} - {""}) or [_commit()]
    people = sorted({r["person"] for r in rows})
    lines = [f"lfw-faces, each person forgotten alone with the defaults, judged by dlib; {len(people)} people; "
             f"mean ± 95% t-interval over the people (rates in %); {cpu_name()}, one torch thread per job, one or "
             f"two jobs at once; commit {', '.join(commits)}, {date.today().isoformat()}; "
             f"attack {ATTACK_STEPS} steps, {ATTACK_SAMPLES} samples; dial {DIAL_SAMPLES} samples at "
             f"s = {', '.join(f'{s:g}' for s in DIAL)}.", "",
             "| method | people | trained params | train s | wall s | forgotten: recognised after | forgotten ✔ | "
             "face found | others kept (after / before) | ΔFID_dlib others | dial ρ | recognised after the attack |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in order:
        rs = by_method[method]
        ms = [r["metrics"] for r in rs]
        kept = [m["others_recognition_after"] / m["others_recognition_before"] for m in ms]
        dfid = [m["fid_dlib_others_after"] - m["fid_dlib_others_before"] for m in ms]
        rho = [_spearman(r["dial"]["rows"]) for r in rs if r["dial"]]
        attack = [r["attack"]["recognition"] for r in rs if r["attack"]]
        forgotten = sum(next(iter(m["verdicts"].values())) == "✔" for m in ms)
        lines.append(
            f"| {method} | {len(rs)} | {ms[0]['trained_params']:,} | "
            f"{_cell([m['train_seconds'] for m in ms], scale=1)} "
            f"| {_cell([m['wall_seconds'] for m in ms], scale=1)} | {_cell([m['recognition_after'] for m in ms])} "
            f"| {forgotten}/{len(ms)} | {_cell([m['face_found_after'] for m in ms])} | "
            f"{_cell(kept, '{:.2f}', 1)} | {_cell(dfid, '{:.3f}', 1)} | {_cell(rho, '{:.2f}', 1)} | "
            f"{_cell(attack)}{'' if len(attack) == len(rs) else f' (of {len(attack)})'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--people", nargs="+", required=True)
    r.add_argument("--methods", nargs="+", default=["legato", "embedding", "residual", "lora", "finetune"])
    r.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lfw_people")
    t = sub.add_parser("table")
    t.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        print(table(args.out))


if __name__ == "__main__":
    main()
