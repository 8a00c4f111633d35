"""LFW 10-fold verification benchmark for `legato` identity models, with throughput.

    .venv/bin/python benchmarks/lfw.py --model dlib                    # all 10 folds
    .venv/bin/python benchmarks/lfw.py --model dlib --folds 1 --pairs 20
    .venv/bin/python benchmarks/lfw.py --throughput-only               # faces/s of every model

Embeddings are cached (`--cache`, default scratch/lfw_<model>.npz) every few hundred images, so an
interrupted run resumes where it stopped and a rerun only evaluates. Faces are found with dlib's HOG
detector (the face nearest the centre), then its CNN detector, then LFW's fixed framing box.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from legato.files import atomic_write_bytes, atomic_write_json
from legato.identity import faces, lfw
from legato.identity.dlib_model import DLIB_DISTANCE_THRESHOLD, DlibModel

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
# LFW images are 250² crops around a Viola-Jones box enlarged 2.2×; this is where HOG usually puts
# the face in them (fractions of the side), used when no detector finds it.
LFW_FACE_BOX = (0.27, 0.3, 0.73, 0.76)
SAVE_EVERY = 200


def load_cache(path: Path) -> dict[str, tuple[np.ndarray, str]]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {str(n): (v, str(f)) for n, v, f in zip(z["names"], z["vectors"], z["found_by"], strict=True)}


def save_cache(path: Path, cache: dict[str, tuple[np.ndarray, str]]) -> None:
    names = sorted(cache)
    buf = io.BytesIO()
    np.savez(
        buf,
        names=np.array(names),
        vectors=np.stack([cache[n][0] for n in names]),
        found_by=np.array([cache[n][1] for n in names]),
    )
    atomic_write_bytes(path, buf.getvalue())


MIRROR = "|mirror"  # cache key suffix: the descriptor of the mirrored dlib chip


def embed_one(model, rgb: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    face = faces.find_face(
        rgb, name.removesuffix(MIRROR), "center", upsample=1, cnn_fallback=True, fallback_box=LFW_FACE_BOX
    )
    if isinstance(model, DlibModel):  # keep dlib's raw descriptors: its distance rule needs them
        chip = model.chip(rgb, face)
        vec = model.describe_chips([chip[:, ::-1] if name.endswith(MIRROR) else chip])[0]
    else:
        with torch.no_grad():
            vec = model.embed_faces([rgb], [face])[0]
    return vec.numpy().astype(np.float32), face.found_by


def embed_images(model, root: Path, names: list[str], cache_path: Path) -> tuple[dict, float | None]:
    cache = load_cache(cache_path)
    todo = [n for n in names if n not in cache]
    started, done = time.perf_counter(), 0
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns) as progress:
        task = progress.add_task(
            f"embedding LFW ({model.name})", total=len(names), completed=len(names) - len(todo)
        )
        for name in todo:
            rgb, _ = faces.read_rgb(root / "images" / name.removesuffix(MIRROR))
            cache[name] = embed_one(model, rgb, name)
            done += 1
            progress.advance(task)
            if done % SAVE_EVERY == 0:
                save_cache(cache_path, cache)
                print(
                    f"{time.strftime('%H:%M:%S')} {len(cache)}/{len(names)} embedded",
                    file=sys.stderr,
                    flush=True,
                )
    if done:
        save_cache(cache_path, cache)
    rate = done / (time.perf_counter() - started) if done else None
    return cache, rate


def score_folds(folds: list[list[lfw.Pair]], cache: dict, raw: bool, mirror: bool = False) -> dict:
    """Per-fold cosine similarities, labels and (for raw descriptors) Euclidean distances.

    With `mirror`, each image's descriptor is the mean of its chip's and its mirrored chip's.
    """

    def vec(name: str) -> np.ndarray:
        v = cache[name][0].astype(np.float64)
        return (v + cache[name + MIRROR][0]) / 2 if mirror else v

    cos, dist, same = [], [], []
    for fold in folds:
        a = np.stack([vec(p.a) for p in fold])
        b = np.stack([vec(p.b) for p in fold])
        dist.append(np.linalg.norm(a - b, axis=1))
        an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
        cos.append((an * bn).sum(1))
        same.append(np.array([p.same for p in fold]))
    names = {n for fold in folds for p in fold for n in (p.a, p.b)}
    norms = np.linalg.norm(np.stack([vec(n) for n in names]), axis=1)
    return {"cos": cos, "dist": dist if raw else None, "same": same, "norm_mean": float(norms.mean())}


def throughput(models: dict, batch: int = 8, repeats: int = 3) -> dict[str, float]:
    """Network-only faces/s on aligned crops, best of `repeats` batches."""
    out = {}
    rng = np.random.default_rng(0)
    for label, model in models.items():
        if isinstance(model, DlibModel):
            chips = [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(batch)]
            run = lambda m=model, c=chips: m.describe_chips(c)  # noqa: E731
        else:
            x = torch.rand(batch, 3, model.crop_size, model.crop_size) * 2 - 1
            run = lambda m=model, x=x: m.embed_crops(x)  # noqa: E731
        with torch.no_grad():
            run()
            best = min(_timed(run) for _ in range(repeats))
        out[label] = batch / best
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default="dlib", help="identity model spec (dlib | arcface:PATH | curricularface:PATH)"
    )
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder with images/ and pairs.txt")
    ap.add_argument("--folds", type=int, default=10, help="evaluate the first N folds")
    ap.add_argument(
        "--pairs", type=int, default=None, help="use only the first N matched and N mismatched pairs"
    )
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (.npz)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    ap.add_argument(
        "--mirror",
        action="store_true",
        help="dlib: average each descriptor with its mirrored chip's (twice the work)",
    )
    ap.add_argument(
        "--evaluate-only",
        action="store_true",
        help="embed nothing: score the folds already complete in the cache",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--throughput-only", action="store_true", help="only time the networks (random weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from legato.identity import load

    if args.throughput_only:
        from legato.identity.arcface import IR101Model, IRSE50Model

        models = {
            "dlib": load("dlib"),
            "arcface-ir-se50 (random weights)": IRSE50Model.random(args.seed),
            "curricularface-ir-101 (random weights)": IR101Model.random(args.seed),
        }
        for label, rate in throughput(models).items():
            print(f"{label}: {rate:.1f} faces/s (network only, {args.threads} thread)")
        return 0

    model = load(args.model)
    if isinstance(model, DlibModel):  # mirrored chips are cached under their own keys (see --mirror)
        model.config.mirror = False
    folds = lfw.read_pairs(args.lfw / "pairs.txt")[: args.folds]
    if args.pairs:
        folds = [f[: args.pairs] + [p for p in f if not p.same][: args.pairs] for f in folds]
    names = list(dict.fromkeys(n for fold in folds for p in fold for n in (p.a, p.b)))
    if args.mirror:
        names = [m for n in names for m in (n, n + MIRROR)]
    tag = args.model.split(":")[0]
    cache_path = args.cache or REPO / "scratch" / f"lfw_{tag}.npz"
    if args.evaluate_only:  # score the folds complete in the cache (another run may be filling it)
        cache, rate = load_cache(cache_path), None

        def keys(n: str) -> tuple[str, ...]:
            return (n, n + MIRROR) if args.mirror else (n,)

        folds = [f for f in folds if all(k in cache for p in f for n in (p.a, p.b) for k in keys(n))]
        if not folds:
            print("no fold is fully embedded yet", file=sys.stderr)
            return 1
        names = list(dict.fromkeys(k for f in folds for p in f for n in (p.a, p.b) for k in keys(n)))
    else:
        cache, rate = embed_images(model, args.lfw, names, cache_path)

    raw = isinstance(model, DlibModel)
    s = score_folds(folds, cache, raw, args.mirror)
    images = [n for n in names if MIRROR not in n]
    results = {
        "model": model.name + (" (mirror-averaged)" if args.mirror else ""),
        "folds": len(folds),
        "pairs": sum(map(len, folds)),
        "images": len(images),
        "found_by": {k: sum(1 for n in images if cache[n][1] == k) for k in ("hog", "cnn", "fallback")},
        "pipeline_faces_per_s": rate,
        "descriptor_norm_mean": s["norm_mean"],
    }
    ev = lfw.evaluate(s["cos"], s["same"], model.threshold)
    results[f"cosine@{model.threshold}"] = ev["fixed"].as_dict()
    results["cosine@best-of-other-folds" if len(folds) > 1 else "cosine@best-on-this-fold"] = (
        ev.get("cross") or ev["self"]
    ).as_dict()
    if raw:
        ev_d = lfw.evaluate(s["dist"], s["same"], DLIB_DISTANCE_THRESHOLD, higher_is_same=False)
        results[f"dlib-distance<{DLIB_DISTANCE_THRESHOLD}"] = ev_d["fixed"].as_dict()
    results["throughput_network_faces_per_s"] = throughput({model.name: model})[model.name]
    suffix = "_mirror" if args.mirror else ""
    atomic_write_json(args.out or REPO / "scratch" / f"lfw_{tag}{suffix}.json", results)
    for key, val in results.items():
        if isinstance(val, dict) and "mean" in val:
            print(f"{key:32s} accuracy {val['mean']:.4f} ± {val['std']:.4f} over {len(val['folds'])} folds")
        else:
            print(f"{key:32s} {val}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
