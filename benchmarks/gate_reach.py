"""Can a gate on the latent reach a person's other photos? Where the held-out photos land in W+.

    python benchmarks/gate_reach.py [--people 1000003 1000100 ...] [--random 2000]

For each SynthFaces person: the photo that would be forgotten and its held-out photos are inverted as
`legato unlearn` inverts them (`resolve_identity`), every latent is standardised by the mapping's
statistics (as the gated field standardises its input), and the cosine of each held-out latent with the
forgotten one is set beside the same cosine for random people. A held-out photo whose cosine is inside the
random people's range cannot be told from a stranger by any function of the latent's direction, so a gate
that opens for it opens for that share of strangers too. `--space identity` measures the same after the
keyed gate's identity map (`--field keyed --gate-space identity`, `legato.unlearning.gate_space`): each
layer's standardised latent times the map fitted to the identity model; `--space embedding` between the
unit identity embeddings the embedding space's MLP predicts from each layer (`--gate-space embedding`).
Prints a table; `--json` writes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT_PEOPLE = [1_000_003, *range(1_000_100, 1_000_110)]  # the demo's person and the ten-people check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, nargs="*", default=DEFAULT_PEOPLE)
    ap.add_argument("--random", type=int, default=2000, help="random people for the strangers' range")
    ap.add_argument("--space", choices=["latent", "identity", "embedding"], default="latent",
                    help="where to measure: the standardised latent, after the keyed gate's identity map, or "
                         "between the embeddings its embedding map predicts")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from legato.generators import load
    from legato.inversion.sources import resolve_identity

    gen = load("synthfaces")
    with torch.no_grad():
        strangers = gen.mapping(torch.randn(args.random, gen.z_dim, generator=torch.Generator().manual_seed(0)))
    center, scale = strangers.mean(0), strangers.std(0)
    projection = embedding = None
    first = center[0] if center.dim() == 2 else center  # the mapping's W+ repeats one w
    first_scale = scale[0] if scale.dim() == 2 else scale
    if args.space == "identity":
        from legato.unlearning.gate_space import identity_projection

        projection = identity_projection(gen, gen.identity_model(), first, first_scale, gen.views(11)[:1])
    elif args.space == "embedding":
        from legato.unlearning.gate_space import embedding_map

        embedding = embedding_map(gen, gen.identity_model(), first, first_scale, gen.views(11)[:1])

    def standard(ws: torch.Tensor) -> torch.Tensor:
        x = (ws - center) / scale
        if embedding is not None:  # each layer's predicted unit embedding
            from legato.ode.fields import embedding_map_forward

            predicted = F.normalize(embedding_map_forward(embedding, x.flatten(0, 1)), dim=1)
            return predicted.view(x.shape[0], -1)
        return (x if projection is None else x @ projection).flatten(1)

    rows = []
    print("| person | held-out photos: cosine with the forgotten photo | strangers: mean ± sd, 99th pct | "
          "strangers above the least similar photo |")
    print("|---|---|---|---|")
    for person in args.people:
        source = resolve_identity(f"person:{person}", gen)
        target = standard(source.ws)
        held = F.cosine_similarity(standard(source.held_out_ws), target).tolist()
        rand = F.cosine_similarity(standard(strangers), target)
        above = float((rand > min(held)).float().mean())
        rows.append({"person": person, "held_out": held, "strangers_mean": float(rand.mean()),
                     "strangers_sd": float(rand.std()), "strangers_q99": float(rand.quantile(0.99)),
                     "strangers_above_least_similar_photo": above})
        print(f"| {person:,} | {', '.join(f'{c:.2f}' for c in held)} | {rand.mean():.2f} ± {rand.std():.2f}, "
              f"{rand.quantile(0.99):.2f} | {above:.1%} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
