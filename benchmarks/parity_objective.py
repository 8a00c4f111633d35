"""Parity of legato's `--preset reference` objective with the LEGATO and GUIDE reference code, one iteration.

    python benchmarks/parity_objective.py --reference-repo DIR [--guide-repo DIR] --work DIR \
        [--neural-rendering-resolution 32] [--depth-samples 12] [--reduced] [--threads 1]

DIR are local copies of `sh-qiangchen/LEGATO` and `KHU-AGI/GUIDE` (fetched by the user, never committed
here). For each repository:

1. A child process (`parity_objective_reference.py`) builds a random-weight EG3D of the FFHQ-512 config
   with the reference's own classes, and runs one iteration of the reference's `unlearn()` on it with the
   draws below (yaw, adjacency z's and α's, global z's), recording every loss term, the total and the
   gradients of what it trains (LEGATO: the ODE adapters; GUIDE: `backbone.synthesis`).
2. This process builds legato's EG3D from that network's tensors and constructor arguments, sets the
   same adapter values, and runs one iteration of `legato.unlearning.trainer.train` with the same draws
   through its `draws=` seam, with the config `UnlearnConfig.for_generator` gives an EG3D (the reference
   preset) and `--micro-batch 1` (so each latent is rendered alone, as the reference does).

Both sides get the same random weights where real ones are missing: the LPIPS-VGG network
(`parity_lpips.py`) and ArcFace IR-SE50 (`model_ir_se50.pth`). Synthesis noise is switched off for the
check (noise strengths 0 in the shared weights; their own gradients are left out); each render seeds the
global RNG from (trained or source network, which latent), so both renderers draw the same random depths.

Prints every term and the total for both sides and the largest gradient difference, and exits 1 when a
term misses 1e-5 relative (the reference's trajectory term, which its code folds into the total, is read
off its total and judged relative to it) or a gradient misses 1e-4: absolute for a tensor whose
largest |gradient| is at most 1, relative to that largest value above (float32 alone moves gradients of
magnitude 20 by 1e-4 between one and two torch threads). `--reduced` uses fewer
backbone channels (channel_base 4,096, channel_max 64), the same structure, for a quick run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TERM_TOLERANCE = 1e-5  # relative
# absolute for gradients of order one; relative to the largest |gradient| above that (float32: our own
# implementation's gradients, at one torch thread and at two, already differ by 1e-4 at magnitudes of 20)
GRAD_TOLERANCE = 1e-4


def _ours_adapter_name(reference_name: str) -> tuple[str, str] | None:
    """`backbone.synthesis.b64.ode_block.odefunc.unlearn.unlearn.2.weight` → (our site, field parameter)."""
    parts = reference_name.split(".")
    if ".ode_block." not in reference_name or parts[-3] != "unlearn":
        return None
    block = parts[2]
    field_param = {"0": "inp", "2": "out"}[parts[-2]] + "." + parts[-1]
    return f"net.backbone.synthesis.{block}.conv1", field_param


def _draws(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "z_u": torch.randn(1, 512, generator=g),
        "z_adjacent": torch.randn(2, 512, generator=g),
        "z_global": torch.randn(2, 512, generator=g),
        "alphas": torch.rand(2, generator=g, dtype=torch.float64) * 15.0,
        "yaw": float((torch.rand(1, generator=g, dtype=torch.float64) * 2 - 1) * math.pi / 12),
    }


def run_reference(repo: Path, work: Path, kind: str, reuse: bool = False) -> dict:
    if reuse and (work / f"reference_{kind}.pt").is_file():
        return torch.load(work / f"reference_{kind}.pt", weights_only=True)
    subprocess.run([sys.executable, str(HERE / "parity_objective_reference.py"), str(repo), str(work), kind],
                   check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return torch.load(work / f"reference_{kind}.pt", weights_only=True)


def run_ours(work: Path, kind: str, ref: dict, draws: dict) -> dict:
    from legato.generators.eg3d.loading import build_eg3d
    from legato.identity.arcface import IRSE50Model
    from legato.unlearning import trainer as T
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.losses import LPIPSDistance
    from legato.unlearning.methods import build
    from legato.unlearning.run import freeze
    from legato.unlearning.targets import ufo_target

    sys.path.insert(0, str(HERE))
    import parity_lpips

    saved = torch.load(work / f"eg3d_{kind}.pt", weights_only=True)
    init_kwargs = json.loads(saved["init_kwargs"])
    gen = build_eg3d((), init_kwargs, saved["tensors"], {
        "neural_rendering_resolution": saved["neural_rendering_resolution"],
        "rendering_kwargs": init_kwargs["rendering_kwargs"]}, source="the reference's network")
    cfg = UnlearnConfig.for_generator(gen, method=kind, iterations=1, micro_batch=1, checkpoint_every=10**9,
                                      eval_every=10**9, log_every=1)
    changes = gen.use_reference_protocol()
    source = freeze(__import__("copy").deepcopy(gen))
    ws_u = ref["w_u"].float()
    ws_t = ufo_target(ws_u, source.w_avg, cfg.target, 30.0)
    torch.manual_seed(cfg.seed)
    trainable = build(freeze(gen), cfg)
    if kind == "legato":
        with torch.no_grad():
            for name, value in ref["adapters"].items():
                mapped = _ours_adapter_name(name)
                if mapped is None or mapped[0] not in trainable.adapter_set.sites:
                    continue
                dict(trainable.adapter_set.adapter(mapped[0]).field.named_parameters())[mapped[1]].copy_(value)

    records: dict[str, list[float]] = {"lpips": [], "id": [], "mse": []}
    lpips_net = parity_lpips.load(work / "lpips_vgg.pt")

    class RecordingLPIPS(LPIPSDistance):
        def forward(self, a, b):
            value = super().forward(a, b)
            records["lpips"].append(value.item())
            return value

    perceptual = RecordingLPIPS(lpips_net, "vgg")
    identity_model = IRSE50Model.from_file(work / "model_ir_se50.pth")
    original_identity_loss, original_f = T.identity_loss, T.F

    def recording_identity_loss(*args, **kwargs):
        value = original_identity_loss(*args, **kwargs)
        records["id"].append(value.item())
        return value

    keys = {}
    n_adj = draws["z_adjacent"].shape[0]
    with torch.no_grad():
        w_r = source.mapping(torch.cat([draws["z_adjacent"], draws["z_global"]]))
        dirs = T.adjacent_directions(ws_u, w_r[:n_adj])
        delta = draws["alphas"].float().view(-1, 1, 1) * dirs
        keys["trained"] = torch.cat([ws_u, ws_u + delta, w_r[n_adj:]])
        keys["source"] = torch.cat([ws_t, ws_t + delta, w_r[n_adj:]])
    for role, model in (("trained", trainable.unlearned), ("source", source)):
        original_render = model.render

        def seeded_render(ws, c=None, generator=None, _role=role, _original=original_render):
            row = int((keys[_role] - ws.detach()).flatten(1).norm(dim=1).argmin())
            torch.manual_seed(1000 + 10 * row + (0 if _role == "trained" else 1))
            return _original(ws, c, generator)

        model.render = seeded_render
    u = (draws["yaw"] / (math.pi / 12) + 1.0) / 2.0
    fixed = T.IterationDraws(camera=source.view_at(u), z=torch.cat([draws["z_adjacent"], draws["z_global"]]),
                             alphas=draws["alphas"].float())
    T.identity_loss, T.F = recording_identity_loss, parity_lpips.RecordingFunctional(records["mse"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = T.train(source, trainable, ws_u, ws_t, cfg, identity_model=identity_model, perceptual=perceptual,
                             alpha_max=15.0, work=Path(tmp), progress=False, draws=lambda step: fixed)
    finally:
        T.identity_loss, T.F = original_identity_loss, original_f
    grads = {name: p.grad.detach().clone() for name, p in trainable._named.items() if p.grad is not None}
    return {"losses": result.final_losses, "records": records, "grads": grads, "protocol": changes,
            "config": {k: getattr(cfg, k) for k in ("preset", "reduction", "trajectory", "training_camera",
                                                     "identity_crop")}}


def compare(kind: str, ref: dict, ours: dict) -> tuple[list[dict], float, bool]:
    """Term table rows, the largest gradient difference, and whether everything is within tolerance."""
    rl, ri, rm = ref["lpips_calls"], ref["id_calls"], ref["mse_calls"]
    n_adj = 2
    ref_terms = {
        "local feature MSE": rm[0], "local LPIPS": rl[0], "local ID": ri[0],
        "local": 1e-2 * rm[0] + rl[0] + 0.1 * ri[0],
        "adjacency": sum(1e-2 * rm[k] + rl[k] + 0.1 * ri[k] for k in range(1, 1 + n_adj)),
        "global": sum(rl[1 + n_adj:]),
    }
    if kind == "legato":  # the code adds its trajectory mean to loss_local and its last step once more
        ref_terms["trajectory"] = ref["total"] - ref_terms["local"] - ref_terms["adjacency"] - ref_terms["global"]
    ref_terms["total"] = ref["total"]
    rec, losses = ours["records"], ours["losses"]
    ours_terms = {"local feature MSE": rec["mse"][0], "local LPIPS": rec["lpips"][0], "local ID": rec["id"][0],
                  "local": losses["local"], "adjacency": losses["adjacency"], "global": losses["global"]}
    if kind == "legato":
        ours_terms["trajectory"] = losses["trajectory"]
    ours_terms["total"] = losses["total"]
    rows, ok = [], True
    for name, a in ref_terms.items():
        b = ours_terms[name]
        scale = abs(ref["total"]) if name == "trajectory" else max(abs(a), abs(b), 1e-12)
        rel = abs(a - b) / scale
        passed = rel <= TERM_TOLERANCE
        ok &= passed
        rows.append({"term": name, "reference": a, "legato": b, "relative difference": rel, "ok": passed})
    worst, worst_name, worst_scale, missing = 0.0, "", 0.0, []
    skipped = [n for n in ref["grads"] if n.endswith("noise_strength")]
    for name, g_ref in ref["grads"].items():
        if name in skipped:
            # the gradient of a noise strength is the noise drawn times the upstream gradient; the reference
            # draws fresh noise for its separate planes pass (get_planes), legato reads the planes off the
            # render, so these cannot agree even with the strengths (and so the noise's effect) at 0
            continue
        if kind == "legato":
            mapped = _ours_adapter_name(name)
            key = f"{mapped[0]}::func.field.{mapped[1]}" if mapped else None
        else:
            key = "net." + name
        if key not in ours["grads"]:
            if g_ref.abs().max() > 0:  # e.g. b4's adapter: built by the reference but never run
                missing.append(name)
            continue
        diff = (ours["grads"][key] - g_ref).abs().max().item() / max(1.0, g_ref.abs().max().item())
        if diff >= worst:
            worst, worst_name, worst_scale = diff, name, g_ref.abs().max().item()
    extra = set(ours["grads"]) - {("net." + n) for n in ref["grads"]} if kind == "guide" else set()
    if skipped:
        print(f"  {len(skipped)} noise-strength gradients not compared (the noise draws differ by construction)")
    if missing or extra:
        ok = False
        print(f"  parameters with a gradient on one side only: {sorted(missing)[:5]} {sorted(extra)[:5]}")
    ok &= worst <= GRAD_TOLERANCE
    print(f"  largest gradient difference in {worst_name} (its largest |gradient|: {worst_scale:.4g})")
    return rows, worst, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-repo", type=Path, help="a local copy of sh-qiangchen/LEGATO")
    ap.add_argument("--guide-repo", type=Path, help="a local copy of KHU-AGI/GUIDE")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--neural-rendering-resolution", type=int, default=32)
    ap.add_argument("--depth-samples", type=int, default=12, help="coarse and importance samples per ray each")
    ap.add_argument("--reduced", action="store_true", help="channel_base 4096 / channel_max 64 in the backbone")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--reuse", action="store_true", help="keep the reference side's results found in --work")
    args = ap.parse_args()
    repos = [(k, r) for k, r in (("legato", args.reference_repo), ("guide", args.guide_repo)) if r is not None]
    if not repos:
        ap.error("give --reference-repo and/or --guide-repo")
    for kind, repo in repos:
        if not (repo / "unlearn.py").is_file():
            ap.error(f"{repo} has no unlearn.py: not a copy of the {kind.upper()} repository")
    torch.set_num_threads(args.threads)
    work = (args.work or Path(tempfile.mkdtemp(prefix="legato-parity-"))).resolve()
    (work / "stubs").mkdir(parents=True, exist_ok=True)
    (work / "stubs" / "requests.py").write_text("# stand-in: the reference imports requests only to download\n")
    (work / "stubs" / "pkg_resources.py").write_text(  # stand-in: setuptools' old API, for one version check
        "import re\n\ndef parse_version(text):\n    return tuple(int(x) for x in re.findall(r'\\d+', text)[:3])\n")
    settings = {"threads": args.threads, "reduced": args.reduced, "depth_samples": args.depth_samples,
                "neural_rendering_resolution": args.neural_rendering_resolution}
    (work / "settings.json").write_text(json.dumps(settings))
    draws = _draws(args.seed)
    torch.save(draws, work / "draws.pt")
    sys.path.insert(0, str(HERE))
    import parity_lpips

    from legato.identity.arcface import IRSE50Model

    torch.save(parity_lpips.RandomLPIPSVGG(seed=3).state_dict(), work / "lpips_vgg.pt")
    torch.save(IRSE50Model.random(seed=4).network.state_dict(), work / "model_ir_se50.pth")

    report, all_ok = {"settings": settings, "methods": {}}, True
    for kind, repo in repos:
        print(f"== {kind}: the reference code ({repo}) ==", flush=True)
        ref = run_reference(repo.resolve(), work, kind, args.reuse)
        print(f"== {kind}: legato ==", flush=True)
        ours = run_ours(work, kind, ref, draws)
        rows, worst, ok = compare(kind, ref, ours)
        all_ok &= ok
        print(f"{kind}: {'PASS' if ok else 'FAIL'}  (config {ours['config']})")
        print(f"  {'term':<20} {'reference':>16} {'legato':>16} {'rel. diff':>10}")
        for r in rows:
            print(f"  {r['term']:<20} {r['reference']:>16.9g} {r['legato']:>16.9g} {r['relative difference']:>10.2e}"
                  f"  {'✔' if r['ok'] else '✘'}")
        n_params = sum(g.numel() for g in ref["grads"].values())
        print(f"  gradients: {len(ref['grads'])} tensors, {n_params:,} values; largest |Δ| / max(1, max |g|) "
              f"{worst:.3e} (tolerance {GRAD_TOLERANCE:g}) {'✔' if worst <= GRAD_TOLERANCE else '✘'}")
        report["methods"][kind] = {"ok": ok, "terms": rows, "max_grad_diff_scaled": worst, "grad_tensors":
                                   len(ref["grads"]), "grad_values": n_params, "config": ours["config"]}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
