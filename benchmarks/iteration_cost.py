"""Cost of one unlearning iteration per method on SynthFaces, measured side by side in one process.

    .venv/bin/python benchmarks/iteration_cost.py [--iterations 20] [--rounds 3] [--variants ...]

Each variant trains the same person for a few iterations (no evaluation), round-robin over `--rounds`
rounds so that load changes on a shared machine hit every variant alike; prints the median seconds per
iteration and the ratio to `guide`.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = {  # on top of the backend's defaults (SynthFaces: legato hidden 64, Euler steps of 0.4 over 1.6)
    "guide": {"method": "guide"},
    "legato": {"method": "legato"},
    "legato 2 steps": {"method": "legato", "step_size": 0.8},
    "legato hidden 256": {"method": "legato", "hidden": 256},
    "residual": {"method": "residual"},
}


def seconds_per_iteration(gen, ws_u, ws_t, alpha_max, iterations: int, **overrides) -> float:
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.losses import make_perceptual
    from legato.unlearning.methods import build
    from legato.unlearning.trainer import train

    cfg = UnlearnConfig.for_generator(gen, iterations=iterations, checkpoint_every=10**9, **overrides)
    source = copy.deepcopy(gen).eval().requires_grad_(False)
    idm = gen.identity_model()
    idm.eval().requires_grad_(False)
    trainable = build(copy.deepcopy(gen).requires_grad_(False), cfg)
    with tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        train(source, trainable, ws_u, ws_t, cfg, identity_model=idm, threshold=None,
              perceptual=make_perceptual(cfg.perceptual, idm), alpha_max=alpha_max, work=Path(work), resume=False,
              progress=False, quick_scores=None)
        return (time.perf_counter() - t) / iterations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from legato.runtime import keep_freed_memory
    from legato.synthfaces import load_generator
    from legato.unlearning.config import parse_distance
    from legato.unlearning.targets import typical_distance, ufo_target

    keep_freed_memory()
    gen = load_generator().eval()
    with torch.no_grad():
        ws_u = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(7)))
    d, _ = parse_distance(gen.unlearning_defaults["distance"])
    a, _ = parse_distance(gen.unlearning_defaults["alpha_max"])
    scale = typical_distance(gen)
    ws_t = ufo_target(ws_u, gen.w_avg, "extra", d * scale)
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for v in args.variants:
            times[v].append(seconds_per_iteration(gen, ws_u, ws_t, a * scale, args.iterations, **VARIANTS[v]))
    ref = statistics.median(times["guide"]) if "guide" in times else None
    for v, ts in times.items():
        med = statistics.median(ts)
        print(json.dumps({"variant": v, "seconds_per_iteration": round(med, 4),
                          "ratio_to_guide": round(med / ref, 3) if ref else None, "rounds": [round(t, 4) for t in ts]}))


if __name__ == "__main__":
    main()
