"""Cost of one unlearning iteration on EG3D at real size: legato against GUIDE, side by side in one run.

    python benchmarks/eg3d_cost.py [--iterations 3] [--resolutions 128 64] [--threads 1] [--json FILE]

A random-weight EG3D of the FFHQ-512 config (`ffhqrebalanced512-128.pkl`'s: 48 + 48 samples per ray,
super-resolution to 512²) is trained for `--iterations` iterations per method under the reference preset,
with the reference's loss models at their real size and random weights: LPIPS-VGG (`parity_lpips.py`) and
ArcFace IR-SE50. Each (method, neural-rendering resolution) runs in its own process, so its peak RSS is its
own; the seconds per iteration are the median over the iterations after the first. Printed: seconds,
peak memory and the ratios GUIDE / legato at each resolution (the machine is shared: only ratios from the
same run compare).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def ffhq512(neural_rendering_resolution: int):
    """Our EG3D with the FFHQ-512 constructor arguments and random weights."""
    from legato.generators.eg3d.generator import EG3DGenerator
    from legato.generators.eg3d.triplane import TriPlaneGenerator

    rendering = dict(image_resolution=512, disparity_space_sampling=False, clamp_mode="softplus",
                     superresolution_module="training.superresolution.SuperresolutionHybrid8XDC",
                     c_gen_conditioning_zero=False, gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode="none",
                     density_reg=0.25, density_reg_p_dist=0.004, reg_type="l1", decoder_lr_mul=1.0, sr_antialias=True,
                     depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3, box_warp=1,
                     avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])
    torch.manual_seed(0)
    net = TriPlaneGenerator(z_dim=512, w_dim=512, c_dim=25, img_resolution=512, img_channels=3,
                            mapping_kwargs={"num_layers": 2}, channel_base=32768, channel_max=512,
                            fused_modconv_default="inference_only", rendering_kwargs=rendering, num_fp16_res=0,
                            sr_num_fp16_res=4, conv_clamp=None,
                            sr_kwargs={"channel_base": 32768, "channel_max": 512,
                                       "fused_modconv_default": "inference_only"})
    net.neural_rendering_resolution = 128
    net.eval().requires_grad_(False)
    from legato.generators.eg3d.generator import EG3DOptions

    return EG3DGenerator(net, EG3DOptions(neural_rendering_resolution=neural_rendering_resolution))


def child(method: str, resolution: int, iterations: int, threads: int) -> dict:
    import copy

    sys.path.insert(0, str(HERE))
    import parity_lpips

    from legato.identity.arcface import IRSE50Model
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.losses import LPIPSDistance
    from legato.unlearning.methods import build
    from legato.unlearning.run import freeze
    from legato.unlearning.targets import ufo_target
    from legato.unlearning.trainer import train

    torch.set_num_threads(threads)
    gen = ffhq512(resolution)
    cfg = UnlearnConfig.for_generator(gen, method=method, iterations=iterations, micro_batch=1, log_every=1,
                                      eval_every=10**9, checkpoint_every=10**9)
    gen.use_reference_protocol()
    source = freeze(copy.deepcopy(gen))
    with torch.no_grad():
        ws_u = source.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(1)))
    ws_t = ufo_target(ws_u, source.w_avg, cfg.target, 30.0)
    trainable = build(freeze(gen), cfg)
    perceptual = LPIPSDistance(parity_lpips.RandomLPIPSVGG(seed=3), "vgg")
    identity = IRSE50Model.random(seed=4)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(source, trainable, ws_u, ws_t, cfg, identity_model=identity, perceptual=perceptual, alpha_max=15.0,
              work=Path(tmp), progress=False)
        total = time.perf_counter() - t0
        log = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    ends = [0.0] + [r["seconds"] for r in log]
    per_iteration = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {"method": method, "resolution": resolution, "iterations": iterations, "seconds_total": round(total, 1),
            "seconds_per_iteration": per_iteration,
            "median_after_first": statistics.median(per_iteration[1:] or per_iteration),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "trainable": trainable.num_trainable()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "RESOLUTION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.iterations, args.threads)))
        return
    rows = []
    for res in args.resolutions:
        for method in ("legato", "guide"):
            out = subprocess.run([sys.executable, __file__, "--child", method, str(res), "--iterations",
                                  str(args.iterations), "--threads", str(args.threads)], check=True,
                                 capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'rendering':>9} {'method':>7} {'s/iteration':>12} {'peak RSS GB':>12} {'trained params':>15}")
    for r in rows:
        print(f"{r['resolution']:>9} {r['method']:>7} {r['median_after_first']:>12.1f} {r['peak_rss_gb']:>12.2f} "
              f"{r['trainable']:>15,}")
    for res in args.resolutions:
        leg = next(r for r in rows if r["resolution"] == res and r["method"] == "legato")
        gd = next(r for r in rows if r["resolution"] == res and r["method"] == "guide")
        print(f"rendering {res}²: guide / legato time {gd['median_after_first'] / leg['median_after_first']:.2f}×, "
              f"peak memory {gd['peak_rss_gb'] / leg['peak_rss_gb']:.2f}×")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
