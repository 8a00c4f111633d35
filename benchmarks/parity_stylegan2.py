"""Parity and CPU speed of legato's native StyleGAN2 against NVIDIA's reference code.

Needs a checkout of NVIDIA's code outside the package (e.g. `git clone NVlabs/stylegan3 scratch/sg3ref`);
nothing from it is copied into legato. For each config the script builds a random-weight generator with
the reference `Generator`, pickles it with the reference `persistence` module, loads that pickle with
`legato.generators.nvlabs.load_network_pickle` (which does not execute it), renders the same z with both
(`noise_mode='const'`, truncation 0.7, reference with `force_fp32=True`) and prints the max abs difference
and the images/s of both (median of `--repeats` timed batches after one warm-up, one thread).

    python benchmarks/parity_stylegan2.py --reference scratch/sg3ref --out scratch/parity
"""

from __future__ import annotations

import argparse
import copy
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

CONFIGS = {  # name: (resolution, channel_base, channel_max, z/w dim, mapping layers, c_dim)
    "tiny64-cond": (64, 1024, 64, 32, 3, 4),
    "small128": (128, 4096, 128, 128, 4, 0),
    "paper256": (256, 16384, 512, 512, 8, 0),  # the StyleGAN2-ADA 256² config
}


def _import_reference(ref_dir: Path):
    """Make the reference importable offline: stub the two modules it imports only for downloads/versions."""
    stubs = Path(tempfile.mkdtemp(prefix="sg2ref-stubs-"))
    (stubs / "requests.py").write_text("# offline stand-in\n")
    (stubs / "pkg_resources.py").write_text(
        "def parse_version(v):\n    return tuple(int(p) for p in v.split('+')[0].split('.')[:3] if p.isdigit())\n")
    sys.path[:0] = [str(ref_dir), str(stubs)]
    import dnnlib
    from training.networks_stylegan2 import Generator

    return dnnlib, Generator


def _make_reference(dnnlib, generator_cls, cfg, seed: int):
    res, cbase, cmax, dim, layers, c_dim = cfg
    torch.manual_seed(seed)
    g = generator_cls(z_dim=dim, c_dim=c_dim, w_dim=dim, img_resolution=res, img_channels=3,
                      mapping_kwargs=dnnlib.EasyDict(num_layers=layers), channel_base=cbase, channel_max=cmax,
                      num_fp16_res=4, conv_clamp=256).eval()
    with torch.no_grad():  # non-zero biases, noise strengths and w_avg, so that every tensor matters
        for name, b in g.named_buffers():
            if name.endswith("w_avg"):
                b.normal_()
        for name, p in g.named_parameters():
            if "noise_strength" in name or (name.endswith("bias") and "affine" not in name):
                p.normal_(0, 0.5)
    return g


def _rate(fn, n: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, required=True, help="checkout of NVlabs/stylegan3")
    ap.add_argument("--out", type=Path, required=True, help="scratch folder for the reference pickles")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dnnlib, generator_cls = _import_reference(args.reference.resolve())
    from legato.generators.nvlabs import load_network_pickle

    args.out.mkdir(parents=True, exist_ok=True)
    print("config | max abs diff | reference img/s | legato img/s | speed ratio (legato / reference)")
    for name in args.configs.split(","):
        ref = _make_reference(dnnlib, generator_cls, CONFIGS[name], args.seed)
        path = args.out / f"{name}.pkl"
        with open(path, "wb") as f:  # written by NVIDIA's own persistence module
            pickle.dump({"G": ref, "D": None, "G_ema": copy.deepcopy(ref), "augment_pipe": None}, f)
        ours = load_network_pickle(path)
        g = torch.Generator().manual_seed(args.seed + 1)
        z = torch.randn(args.batch, ref.z_dim, generator=g)
        c = torch.randn(args.batch, ref.c_dim, generator=g)
        with torch.no_grad():
            ws = ref.mapping(z, c, truncation_psi=0.7)
            a = ref.synthesis(ws, noise_mode="const", force_fp32=True)
            b = ours.synthesis(ours.mapping(z, c, truncation_psi=0.7))
            diff = (a - b).abs().max().item()
            r_ref = _rate(lambda r=ref, w=ws: r.synthesis(w, noise_mode="const", force_fp32=True),
                          args.batch, args.repeats)
            r_ours = _rate(lambda g=ours, w=ws: g.synthesis(w), args.batch, args.repeats)
        print(f"{name} | {diff:.3e} | {r_ref:.3f} | {r_ours:.3f} | {r_ours / r_ref:.2f}", flush=True)


if __name__ == "__main__":
    main()
