"""How independent the SynthFaces judge is of the identity encoder the losses use, side by side in one run.

    .venv/bin/python benchmarks/judge_independence.py [--pairs 500] [--fidelity 300]

For both networks: verification accuracy at their own thresholds on held-out people (renders, and renders
degraded by the other network's augmentation), the generator's fidelity (G(z) the same person as the render
of z's parameters), and how far the two agree: the correlation of their pair cosines, and how often one says
"same" where the other says "different".
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--fidelity", type=int, default=300)
    ap.add_argument("--json", default=None, help="write the numbers here too")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from legato.synthfaces.fidelity import measure_fidelity
    from legato.synthfaces.identity_encoder import load_identity_model, load_judge_model
    from legato.synthfaces.train_identity import augment, augment_judge, pair_similarities, verification_pairs

    models = {"loss (synthfaces-id)": load_identity_model(), "judge (synthfaces-judge)": load_judge_model()}
    a, b, same = verification_pairs(args.pairs, first_seed=1_200_000, seed=3)  # people neither model tuned on
    degraded = {"renders": a, "augment (loss's)": augment(a, torch.Generator().manual_seed(5)),
                "augment_judge (judge's)": augment_judge(a, torch.Generator().manual_seed(6))}
    out: dict = {"pairs": args.pairs, "models": {}}
    sims = {}
    for name, m in models.items():
        row = {"threshold": round(m.threshold, 4)}
        for kind, x in degraded.items():
            s = pair_similarities(m, x, b)
            sims[(name, kind)] = s
            row[f"accuracy, {kind}"] = round(float(((s >= m.threshold) == same).float().mean()), 4)
        fid = measure_fidelity(n=args.fidelity, identity_model=m)
        row["generator fidelity (render match)"] = round(fid["render_match_rate"], 4)
        row["yaw consistency"] = round(fid["yaw_consistency_rate"], 4)
        out["models"][name] = row
    (n1, m1), (n2, m2) = models.items()
    s1, s2 = sims[(n1, "renders")], sims[(n2, "renders")]
    out["cosine correlation (all pairs)"] = round(float(torch.corrcoef(torch.stack([s1, s2]))[0, 1]), 4)
    out["cosine correlation (genuine pairs)"] = round(float(torch.corrcoef(torch.stack([s1[same], s2[same]]))[0, 1]), 4)
    out["cosine correlation (impostor pairs)"] = round(
        float(torch.corrcoef(torch.stack([s1[~same], s2[~same]]))[0, 1]), 4)
    out["decisions disagree"] = round(float(((s1 >= m1.threshold) != (s2 >= m2.threshold)).float().mean()), 4)
    print(json.dumps(out, indent=1))
    if args.json:
        from legato.files import atomic_write_json

        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
