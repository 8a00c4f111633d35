"""Parity of legato's native EG3D with NVIDIA's reference code, and CPU speed of both.

Run from a scratch folder with a local copy of the NVlabs/eg3d repository (never committed here):

    python benchmarks/parity_eg3d.py --eg3d-repo scratch/eg3d_ref/eg3d --work scratch/eg3d_parity [--reduced]

1. A child process runs NVIDIA's code: it builds a TriPlaneGenerator of the released FFHQ 512 config
   (`ffhqrebalanced512-128.pkl`: SuperresolutionHybrid8XDC, 2 mapping layers, pose-conditioned, neural
   rendering at 128², 48 + 48 samples per ray) with random weights (biases, noise strengths and w_avg
   randomised too), pickles it with NVIDIA's persistence module, renders one image with
   `noise_mode='const'` after `torch.manual_seed(123)`, and saves the outputs as plain tensors.
   `--reduced` keeps the structure but uses channel_base 4096 / channel_max 64 in the backbone.
2. This process loads the pickle with `legato.generators.load` (the restricted reader: nothing from the
   file is executed), renders with the same ws, camera and seed, and prints the max abs differences of
   `image`, `image_raw` and `image_depth`, and the seconds per image of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

CHILD = textwrap.dedent('''
    import math, pickle, sys, time
    import torch
    repo, out, reduced, threads, nrr = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
    sys.path[:0] = [repo, out + "/stubs"]
    torch.set_num_threads(threads)
    import dnnlib, camera_utils as cu
    from training.triplane import TriPlaneGenerator
    cbase, cmax = (4096, 64) if reduced else (32768, 512)
    rendering = dict(image_resolution=512, disparity_space_sampling=False, clamp_mode="softplus",
        superresolution_module="training.superresolution.SuperresolutionHybrid8XDC", c_gen_conditioning_zero=False,
        gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode="none", density_reg=0.25, density_reg_p_dist=0.004,
        reg_type="l1", decoder_lr_mul=1.0, sr_antialias=True, depth_resolution=48, depth_resolution_importance=48,
        ray_start=2.25, ray_end=3.3, box_warp=1, avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])
    sr = dnnlib.EasyDict(channel_base=cbase, channel_max=cmax, fused_modconv_default="inference_only")
    torch.manual_seed(0)
    G = TriPlaneGenerator(z_dim=512, w_dim=512, c_dim=25, img_resolution=512, img_channels=3,
        mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=cbase, channel_max=cmax,
        fused_modconv_default="inference_only", rendering_kwargs=rendering, num_fp16_res=0, sr_num_fp16_res=4,
        sr_kwargs=sr, conv_clamp=None).eval().requires_grad_(False)
    G.neural_rendering_resolution = nrr
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith(("bias", "w_avg")) or "noise_strength" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "noise_const" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    with open(out + "/eg3d_random.pkl", "wb") as f:
        pickle.dump({"G_ema": G, "training_set_kwargs": None}, f)
    pivot, K = torch.tensor([0, 0, 0.2]), cu.FOV_to_intrinsics(18.837)
    pose = lambda y, p: cu.LookAtPoseSampler.sample(math.pi / 2 + y, math.pi / 2 + p, pivot, radius=2.7)
    cond = torch.cat([pose(0, 0).reshape(-1, 16), K.reshape(-1, 9)], 1)
    cam = torch.cat([pose(0.25, -0.2).reshape(-1, 16), K.reshape(-1, 9)], 1)
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ws = G.mapping(z, cond, truncation_psi=0.7)
        torch.manual_seed(123)
        t0 = time.perf_counter()
        res = G.synthesis(ws, cam, noise_mode="const")
        dt = time.perf_counter() - t0
    torch.save({"z": z, "cond": cond, "cam": cam, "ws": ws, "seconds": torch.tensor(dt),
                **{k: v.contiguous() for k, v in res.items()}}, out + "/reference.pt")
''')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eg3d-repo", required=True, help="folder holding NVIDIA's eg3d code (train.py, training/)")
    ap.add_argument("--work", required=True, help="scratch folder for the pickle and outputs")
    ap.add_argument("--reduced", action="store_true", help="fewer backbone channels, same structure")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--neural-rendering-resolution", type=int, default=128)
    ap.add_argument("--reuse", action="store_true", help="skip step 1 when its outputs exist")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    (work / "stubs").mkdir(parents=True, exist_ok=True)
    (work / "stubs" / "requests.py").write_text("# stand-in: the reference imports requests only to download\n")
    if not (args.reuse and (work / "reference.pt").is_file()):
        subprocess.run([sys.executable, "-c", CHILD, str(Path(args.eg3d_repo).resolve()), str(work),
                        "1" if args.reduced else "0", str(args.threads), str(args.neural_rendering_resolution)],
                       check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    torch.set_num_threads(args.threads)
    from legato.generators import load

    ref = torch.load(work / "reference.pt", weights_only=True)
    gen = load(str(work / "eg3d_random.pkl")).eval()
    with torch.no_grad():
        ws = gen.mapping(ref["z"], ref["cond"], truncation_psi=0.7)
        torch.manual_seed(123)
        t0 = time.perf_counter()
        out = gen.render(ref["ws"], ref["cam"])
        seconds = time.perf_counter() - t0
    result = {
        "config": "FFHQ 512 (ffhqrebalanced512-128)" + (", reduced backbone channels" if args.reduced else ""),
        "threads": args.threads,
        "ws_max_abs_diff": (ws - ref["ws"]).abs().max().item(),
        **{f"{k}_max_abs_diff": (out[k] - ref[k]).abs().max().item() for k in ("image", "image_raw", "image_depth")},
        "seconds_per_image_legato": round(seconds, 2),
        "seconds_per_image_reference": round(ref["seconds"].item(), 2),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    (work / "parity.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
