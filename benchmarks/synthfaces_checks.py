"""The must-show measurements of the SynthFaces world, from the shipped weights.

    python benchmarks/synthfaces_checks.py [--only identity fidelity detail mouth inversion photo-check]
        [--refine 0 10] [--refine-id-weight 0 0.5] [--generator FILE]

- identity: verification accuracy of the identity encoder on 1,000 genuine + 1,000 impostor pairs of
  held-out people (other nuisance and camera), at its stored threshold and at the best one;
- fidelity: generator vs renderer of the same parameters verified as the same person (500 z's, random
  cameras), and the same ws across the 11 evaluation yaws;
- detail: generator vs renderer on 500 held-out latents: identity match, the feature probe's agreement
  (glasses, beard, eye colour) and the L1 error inside the eye and mouth regions (`synthfaces.detail`);
- mouth: where the mouth-region L1 comes from (the same 500 latents as detail), split by how open the
  rendered mouth is, by beard and by distance from the lips, beside the error of a blurred or 32² render
  alone (how sharp a generator must be for a given error), and a picture of the worst and of typical
  mouths (render | generator | error) at `--mouth-picture` (`synthfaces.detail.mouth_errors`);
- photo-check: how well the generator's closest image explains a photo (`Inverter.reconstruction_match`,
  after the 10 refinement steps of `unlearn`)
  of photos of the world (in-domain, out-of-domain) against things that are not (plain colours, noise,
  LFW photos when ../shared/data/lfw is there), which calibrates `MIN_RECONSTRUCTION_MATCH`;
- inversion: G(invert(photo)) verified as the person of the same photo and of other photos (100 held-out
  people), for each number of refinement steps and identity-loss weight given (weight 0 = pixel L1 only).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=["identity", "fidelity", "inversion"])
    ap.add_argument("--refine", nargs="*", type=int, default=[0, 10])
    ap.add_argument("--refine-id-weight", nargs="*", type=float, default=[0.0, 0.5],
                    help="identity-loss weights of the refinement (0: pixels only, the judging encoder stays out "
                         "of the loop)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mouth-picture", default="docs/images/synthfaces_mouth_errors.png")
    ap.add_argument("--generator", default=None, help="a generator file to check instead of the shipped one")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from legato.synthfaces import load_identity_model, load_inverter
    from legato.synthfaces.generator import load_generator as _load

    def load_generator():
        return _load(path=args.generator)

    if "identity" in args.only:
        from legato.synthfaces.train_identity import evaluate

        t = time.perf_counter()
        r = evaluate(load_identity_model(), n_pairs=1000)
        print(json.dumps({"check": "identity", **r, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    if "fidelity" in args.only:
        from legato.synthfaces.fidelity import measure_fidelity

        t = time.perf_counter()
        r = measure_fidelity(n=500, generator=load_generator())
        print(json.dumps({"check": "fidelity", **r, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    if "detail" in args.only:
        from legato.synthfaces.detail import load_probe, measure_detail, probe_accuracy

        t = time.perf_counter()
        probe = load_probe()
        r = measure_detail(load_generator(), n=500, probe=probe)
        print(json.dumps({"check": "detail", **r, "probe_accuracy_on_renders": probe_accuracy(probe),
                          "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    if "mouth" in args.only:
        from legato.synthfaces.detail import mouth_errors

        t = time.perf_counter()
        r = mouth_errors(load_generator(), n=500)
        mouth_picture(r, args.mouth_picture)
        shown = {k: v for k, v in r.items() if k not in ("per_latent", "fake", "real", "mouth")}
        print(json.dumps({"check": "mouth", **shown, "picture": args.mouth_picture,
                          "seconds": round(time.perf_counter() - t, 1)}, ensure_ascii=False), flush=True)
    if "photo-check" in args.only:
        photo_check(load_generator(), load_inverter)
    if "inversion" in args.only:
        from legato.synthfaces.train_inverter import evaluate_inversion

        gen = load_generator()
        idm = load_identity_model()
        inv = load_inverter(generator=gen)
        for steps in args.refine:
            for id_weight in args.refine_id_weight if steps else [0.0]:
                t = time.perf_counter()
                r = evaluate_inversion(inv, idm, n_people=100, refine_steps=steps, id_weight=id_weight)
                print(json.dumps({"check": "inversion", "refine_steps": steps, **r,
                                  "seconds": round(time.perf_counter() - t, 1)}), flush=True)


def photo_check(gen, load_inverter) -> None:
    """Reconstruction errors of photos of the world and of things that are not (see the module docstring)."""
    from pathlib import Path

    from legato.inversion.images import load_image
    from legato.synthfaces.world import out_of_domain_photos, photos

    inv = load_inverter(generator=gen)
    g = torch.Generator().manual_seed(0)
    sets = {"in-domain photos": torch.cat([photos(1_000_000 + i, 1) for i in range(100)]),
            "out-of-domain photos": torch.cat([out_of_domain_photos(1_000_000 + i, 1) for i in range(100)]),
            "plain colours": (torch.rand(20, 3, 1, 1, generator=g) * 2 - 1).expand(-1, -1, 64, 64).contiguous(),
            "uniform noise": torch.rand(20, 3, 64, 64, generator=g) * 2 - 1,
            "smooth noise": torch.nn.functional.interpolate(torch.rand(20, 3, 8, 8, generator=g) * 2 - 1, size=64,
                                                            mode="bilinear")}
    lfw = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
    if lfw.is_dir():
        files = sorted(lfw.rglob("*.jpg"))
        files = files[:: max(1, len(files) // 50)][:50]
        sets["LFW photos"] = torch.cat([load_image(f, 64) for f in files])
    for name, x in sets.items():
        with torch.no_grad():
            ws = inv(x)
        ws = inv.refine(x, ws, steps=10)  # as `legato unlearn` refines a photo
        err = inv.reconstruction_match(x, ws)
        print(json.dumps({"check": "photo-check", "set": name, "n": int(x.shape[0]), "min": round(float(err.min()), 4),
                          "median": round(float(err.median()), 4), "max": round(float(err.max()), 4)}), flush=True)



def mouth_picture(r: dict, path: str, worst: int = 6, typical: int = 6, scale: int = 5) -> None:
    """Rows of mouth crops (render | generator | |error|, 28×20 pixels around the mouth region): the `worst`
    latents by mouth error, then `typical` ones around the median."""
    import numpy as np
    from PIL import Image

    order = r["per_latent"].argsort(descending=True)
    mid = len(order) // 2
    picks = list(order[:worst]) + list(order[mid - typical // 2: mid - typical // 2 + typical])
    tiles = []
    for i in picks:
        ys, xs = torch.nonzero(r["mouth"][i], as_tuple=True)
        h, w = r["real"].shape[-2:]
        y0 = int(min(max(0, (int(ys.min()) + int(ys.max())) // 2 - 10), h - 20))
        x0 = int(min(max(0, (int(xs.min()) + int(xs.max())) // 2 - 14), w - 28))

        def crop(img, y0=y0, x0=x0):
            return ((img[:, y0:y0 + 20, x0:x0 + 28].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).byte().numpy()

        err = (r["fake"][i] - r["real"][i]).abs().mean(0)[y0:y0 + 20, x0:x0 + 28]
        err = np.repeat((err.clamp(0, 1) * 255).byte().numpy()[..., None], 3, axis=2)
        gap = np.full((20, 2, 3), 255, np.uint8)
        tiles.append(np.concatenate([crop(r["real"][i]), gap, crop(r["fake"][i]), gap, err], 1))
        tiles.append(np.full((2, tiles[-1].shape[1], 3), 255, np.uint8))
    img = np.concatenate(tiles[:-1], 0)
    Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST).save(path)


if __name__ == "__main__":
    main()
