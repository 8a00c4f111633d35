"""The `lfw-faces` world judged by dlib: face rate, recognition per person, FID_dlib, sampling cost, grid.

    .venv/bin/python benchmarks/lfw_world.py [--per-person 16] [--out benchmarks/results/lfw_world]
        [--reference build|shipped] [--grid docs/images/lfw_faces_generated.png] [--grid-with-real FILE]

Samples `--per-person` faces of each of the 62 people (fixed noise seeds), judges them with dlib
(`legato.lfwfaces.judge`), and computes FID_dlib of all samples against the held-out real photos, beside
the noise floor FID_dlib(train photos, held-out photos) of real against real. `--reference build`
recomputes the judge's centroids from the LFW photos on disk and writes the shipped reference file;
`shipped` uses the committed one. Prints a JSON summary and writes `summary.json`, `per_person.csv`.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from run import cpu_name  # benchmarks/run.py, beside this script

ROOT = Path(__file__).resolve().parents[1]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


GRID_PEOPLE = ("Alejandro_Toledo", "Angelina_Jolie", "Bill_Clinton", "George_W_Bush", "Jennifer_Aniston",
               "Kofi_Annan", "Serena_Williams", "Vladimir_Putin")


def grid(world, faceset, path: Path, with_real: bool, n: int = 6, seed: int = 0) -> None:
    """Per row a person: generated samples (2n), or held-out real photos (left) | generated (right), 3×.

    The real | generated grid holds LFW crops: it is for looking at on the machine that has LFW, never for
    committing (the docs show generated faces only)."""
    from legato.evaluation.images import save_grid
    from legato.lfwfaces.world import sample

    x, y = faceset.tensors(held_out=True)
    rows = []
    for name in GRID_PEOPLE:
        p = world.label_of(name)
        if with_real:
            real = x[y == p][:n]
            if real.shape[0] < n:  # pad a person with fewer held-out photos with grey
                real = torch.cat([real, torch.zeros(n - real.shape[0], *real.shape[1:])])
            rows += [real, sample(world, torch.full((n,), p), seed=seed + p)]
        else:
            rows.append(sample(world, torch.full((2 * n,), p), seed=seed + p))
    save_grid(F.interpolate(torch.cat(rows), scale_factor=3, mode="nearest"), path, nrow=2 * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-person", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lfw_world")
    ap.add_argument("--reference", choices=("build", "shipped"), default="shipped")
    ap.add_argument("--grid", type=Path, default=None, help="write a grid of generated faces here (the docs')")
    ap.add_argument("--grid-with-real", type=Path, default=None,
                    help="write real | generated here (LFW crops: look, never commit)")
    ap.add_argument("--grid-only", action="store_true", help="only write the grids")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from legato.evaluation.fid import frechet_distance
    from legato.lfwfaces import judge as J
    from legato.lfwfaces.data import prepare
    from legato.lfwfaces.world import GUIDANCE, STEPS, load_world, sample

    args.out.mkdir(parents=True, exist_ok=True)
    world = load_world()
    faceset = prepare(progress=True)
    if args.grid_only:
        return write_grids(args, world, faceset)
    judge = J.DlibJudge()
    if args.reference == "build":
        t0 = time.perf_counter()
        centroids, real_feats, ref_summary = J.build_reference(faceset, judge)
        J.save_reference(J.REFERENCE_FILE, centroids, real_feats, faceset.names, ref_summary)
        print(f"reference built in {time.perf_counter() - t0:.1f} s → {J.REFERENCE_FILE}", flush=True)
    centroids, real_feats, people = J.load_reference()
    if people != world.people:
        raise SystemExit("the judge's reference names other people than the world")
    judge.centroids, judge.real_features, judge.people = centroids, real_feats, people
    k = len(people)

    # the judge on the real held-out photos (the centroids include them: an upper bound) and on train photos
    x_ho, y_ho = faceset.tensors(held_out=True)
    x_tr, y_tr = faceset.tensors(held_out=False)
    real_train = J.recognition_rates(judge.judge(x_tr), y_tr, k)

    # sampling cost: one batch of 64 (guided: two UNet passes per step)
    labels64 = torch.arange(64) % k
    t0 = time.perf_counter()
    sample(world, labels64, seed=123)
    batch_s = time.perf_counter() - t0

    labels = torch.arange(k).repeat_interleave(args.per_person)
    t0 = time.perf_counter()
    samples = sample(world, labels, seed=0, progress=True)
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    judged = judge.judge(samples)
    gen = J.recognition_rates(judged, labels, k)
    judge_s = time.perf_counter() - t0
    fid_gen = frechet_distance(real_feats.double(), judge.fid_features(samples))
    fid_floor = frechet_distance(real_feats.double(), judge.fid_features(x_tr))
    # the floor at the generated set's size: as many train photos as samples, drawn at random
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(x_tr.shape[0], generator=g)[:min(samples.shape[0], x_tr.shape[0])]
    fid_floor_n = frechet_distance(real_feats.double(), judge.fid_features(x_tr[idx]))

    params = sum(p.numel() for p in world.unet.parameters())
    folder_bytes = sum(f.stat().st_size for f in world.folder.iterdir())
    summary = {
        "date": date.today().isoformat(), "commit": _commit(), "machine": cpu_name(),
        "threads": args.threads, "world_steps": world.meta["total_steps"], "people": k,
        "per_person": args.per_person, "sampler": {"steps": STEPS, "guidance": GUIDANCE},
        "face_found_generated": gen["mean_face_found"], "recognition_generated": gen["mean_recognition"],
        "people_recognised_at_least_60pct": sum(r >= 0.6 for r in gen["recognition"]),
        "worst_recognition": min(gen["recognition"]),
        "recognition_real_train_photos": real_train["mean_recognition"],
        "face_found_real_train_photos": real_train["mean_face_found"],
        "chance": 1 / k, "fid_dlib_generated_vs_held_out": fid_gen,
        "fid_dlib_train_photos_vs_held_out": fid_floor, "fid_dlib_floor_same_n": fid_floor_n,
        "n_held_out": int(x_ho.shape[0]), "n_train_photos": int(x_tr.shape[0]),
        "unet_parameters": params, "folder_bytes": folder_bytes,
        "seconds_per_batch_of_64": batch_s, "sample_seconds": sample_s, "judge_seconds": judge_s,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(args.out / "per_person.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["person", "recognition", "face_found", "real_train_recognition"])
        for p in range(k):
            w.writerow([people[p], gen["recognition"][p], gen["face_found"][p], real_train["recognition"][p]])
    print(json.dumps(summary, indent=1))
    write_grids(args, world, faceset)


def write_grids(args, world, faceset) -> None:
    if args.grid is not None:
        grid(world, faceset, args.grid, with_real=False)
    if args.grid_with_real is not None:
        grid(world, faceset, args.grid_with_real, with_real=True)


if __name__ == "__main__":
    main()
