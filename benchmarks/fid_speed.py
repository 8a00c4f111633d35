"""FID's cost: torchmetrics' `FrechetInceptionDistance` against `legato.evaluation.fid.frechet_distance`
(the symmetric form of tr √(Σ₁Σ₂)) on the same feature sets, side by side in one run, with the largest
relative difference between their values.

    python benchmarks/fid_speed.py [--dims 128 256 512] [--samples 300] [--repeats 10]

A run's two bootstrap intervals (fid_pre, delta_fid_real) compute 150 distances, so the per-distance time
times 150 is what a run pays for them.
"""

from __future__ import annotations

import argparse
import time

import torch


def _torchmetrics_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Features(torch.nn.Module):
        num_features = a.shape[1]

        def forward(self, x):
            return x

    metric = FrechetInceptionDistance(feature=Features()).double()
    metric.update(a, real=True)
    metric.update(b, real=False)
    return float(metric.compute())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    from legato.evaluation.fid import frechet_distance

    print(f"torch threads {torch.get_num_threads()}, {args.samples} samples a set, {args.repeats} repeats")
    print("| features | torchmetrics ms | legato ms | speed-up | largest relative difference |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for dim in args.dims:
        a = torch.randn(args.samples, dim, generator=g, dtype=torch.float64)
        b = torch.randn(args.samples, dim, generator=g, dtype=torch.float64) * 1.1 + 0.05
        times = {"torchmetrics": [], "legato": []}
        diff = 0.0
        for _ in range(args.repeats):  # interleaved, so drift of the machine hits both alike
            t = time.perf_counter()
            ref = _torchmetrics_fid(a, b)
            times["torchmetrics"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = frechet_distance(a, b)
            times["legato"].append(time.perf_counter() - t)
            diff = max(diff, abs(ours - ref) / abs(ref))
        tm, ours_t = (sorted(v)[len(v) // 2] * 1000 for v in times.values())
        print(f"| {dim} | {tm:.1f} | {ours_t:.1f} | {tm / ours_t:.2f}× | {diff:.1e} |")


if __name__ == "__main__":
    main()
