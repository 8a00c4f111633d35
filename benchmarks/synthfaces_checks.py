"""The must-show measurements of the SynthFaces world, from the shipped weights.

    python benchmarks/synthfaces_checks.py [--only identity fidelity inversion] [--refine 0 10]
        [--refine-id-weight 0 0.5]

- identity: verification accuracy of the identity encoder on 1,000 genuine + 1,000 impostor pairs of
  held-out people (other nuisance and camera), at its stored threshold and at the best one;
- fidelity: generator vs renderer of the same parameters verified as the same person (500 z's, random
  cameras), and the same ws across the 11 evaluation yaws;
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from legato.synthfaces import load_generator, load_identity_model, load_inverter

    if "identity" in args.only:
        from legato.synthfaces.train_identity import evaluate

        t = time.perf_counter()
        r = evaluate(load_identity_model(), n_pairs=1000)
        print(json.dumps({"check": "identity", **r, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    if "fidelity" in args.only:
        from legato.synthfaces.fidelity import measure_fidelity

        t = time.perf_counter()
        r = measure_fidelity(n=500)
        print(json.dumps({"check": "fidelity", **r, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
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


if __name__ == "__main__":
    main()
