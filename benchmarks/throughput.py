"""SynthFaces sample throughput: the shipped generator against the procedural renderer, in one run.

    .venv/bin/python benchmarks/throughput.py [--batch 16] [--batches 10] [--threads 1] [--seed 0]
    .venv/bin/python benchmarks/throughput.py --weights NEW --against OLD [--batch 32] [--batches 15]

Both draw the same people (z ~ N(0, I) → parameters by `params.z_to_params`, random cameras) and are
timed in this one process, so the ratio is meaningful even when other jobs share the CPU. Also prints
the latency of a single 64×64 image (forward, and forward + backward through the synthesis network,
which is what an unlearning iteration pays). `--against` times a second generator file on the same batch,
the two alternating round by round, and prints the ratio of their median batch times.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from legato.synthfaces import params as P
from legato.synthfaces.generator import load_generator
from legato.synthfaces.renderer import render


def _best_seconds(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def measure(batch: int = 16, batches: int = 10, seed: int = 0, weights: str | None = None) -> dict:
    gen = load_generator(path=weights)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, P.Z_DIM, generator=g)
    cam = P.random_camera(batch, generator=g)
    idn, nui = P.split(P.z_to_params(z))

    with torch.no_grad():
        t_gen = _best_seconds(lambda: gen(z, cam), batches)
        t_ren = _best_seconds(lambda: render(idn, nui, cam), batches)
        ws1 = gen.mapping(z[:1])
        t_one = _best_seconds(lambda: gen.synthesis(ws1, cam[:1]), 5 * batches)

    gen.requires_grad_(True)

    def fwd_bwd() -> None:
        ws = ws1.clone().requires_grad_(True)
        gen.synthesis(ws, cam[:1]).square().mean().backward()

    t_one_bwd = _best_seconds(fwd_bwd, 5 * batches)
    gen.requires_grad_(False)
    return {
        "batch": batch,
        "threads": torch.get_num_threads(),
        "generator_images_per_s": batch / t_gen,
        "renderer_images_per_s": batch / t_ren,
        "generator_over_renderer": t_ren / t_gen,
        "generator_one_image_forward_ms": 1000 * t_one,
        "generator_one_image_forward_backward_ms": 1000 * t_one_bwd,
    }


def compare(weights: str | None, against: str, batch: int = 32, rounds: int = 15, seed: int = 0) -> dict:
    """Median forward time of a batch for two generator files, timed alternately in this one process."""
    gens = {"new": load_generator(path=weights), "old": load_generator(path=against)}
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, P.Z_DIM, generator=g)
    cam = P.random_camera(batch, generator=g)
    times: dict[str, list[float]] = {k: [] for k in gens}
    with torch.no_grad():
        for gen in gens.values():
            gen(z, cam)  # warm-up
        for _ in range(rounds):
            for name, gen in gens.items():
                t = time.perf_counter()
                gen(z, cam)
                times[name].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"batch": batch, "rounds": rounds, "new_s": med["new"], "old_s": med["old"],
            "new_over_old": med["new"] / med["old"],
            "new_params": sum(p.numel() for p in gens["new"].parameters()),
            "old_params": sum(p.numel() for p in gens["old"].parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=10, help="timed repeats (median taken)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default=None, help="a generator safetensors file (default: the shipped one)")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON only")
    ap.add_argument("--against", default=None, help="another generator file to time side by side")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.against:
        print(json.dumps(compare(a.weights, a.against, a.batch, a.batches, a.seed)))
        return
    r = measure(a.batch, a.batches, a.seed, a.weights)
    if a.json:
        print(json.dumps(r))
        return
    print(f"batch {r['batch']}, {r['threads']} thread(s), median of {a.batches} batches")
    print(f"{'':12}{'images/s':>12}")
    print(f"{'generator':12}{r['generator_images_per_s']:12.1f}")
    print(f"{'renderer':12}{r['renderer_images_per_s']:12.1f}")
    print(f"ratio generator/renderer: {r['generator_over_renderer']:.2f}×")
    print(f"one image: forward {r['generator_one_image_forward_ms']:.1f} ms, "
          f"forward+backward {r['generator_one_image_forward_backward_ms']:.1f} ms")


if __name__ == "__main__":
    main()
