"""Renderer | previous generator | new generator: the same people, nuisance and views, side by side.

    .venv/bin/python benchmarks/synthfaces_side_by_side.py --previous OLD.safetensors [--new NEW.safetensors]
        [--first 1000000 --people 6 --views 3] --out docs/images/synthfaces_renderer_vs_generator.png

`--previous` is the generator to compare against (e.g. the file of an earlier commit:
`git show REV:src/legato/synthfaces/weights/generator.safetensors > old.safetensors`); `--new` defaults to
the shipped one. People are held-out identity seeds (≥ 1,000,000), each with one nuisance draw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def panels(previous: str, new: str | None, first: int, people: int, views: int) -> list[torch.Tensor]:
    from legato.synthfaces.generator import load_generator
    from legato.synthfaces.params import identity_from_seed, params_to_z, random_nuisance
    from legato.synthfaces.world import grid_cameras, identity_grid, photo_generator

    seeds = list(range(first, first + people))
    cams = grid_cameras(views)
    out = [identity_grid(seeds, views)]  # [P, V, 3, 64, 64]
    for path in (previous, new):
        gen = load_generator(path=path)
        rows = []
        with torch.no_grad():
            for s in seeds:
                nui = random_nuisance(1, photo_generator(s, 0))
                z = params_to_z(torch.cat([identity_from_seed(s)[None], nui], 1))
                rows.append(gen.synthesis(gen.mapping(z).expand(views, -1, -1), cams))
        out.append(torch.stack(rows))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--previous", required=True)
    ap.add_argument("--new", default=None)
    ap.add_argument("--first", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--labels", nargs=3, default=["renderer (ground truth)", "previous generator", "new generator"])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from legato.evaluation.images import grid_array

    grids = [grid_array(p.flatten(0, 1), nrow=a.views) for p in panels(a.previous, a.new, a.first, a.people, a.views)]
    h, w = grids[0].shape[:2]
    fig, axes = plt.subplots(1, 3, figsize=(3 * w / 40, h / 40 + 0.6), dpi=100)
    for ax, grid, label in zip(axes, grids, a.labels, strict=True):
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(label, fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
