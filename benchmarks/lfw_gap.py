"""Training settings of lfw-faces compared by the model's own velocities only (no dlib): how the held-out
velocity gap to "nobody" (`forget_gap`) and the others' drift (`kept_drift`) fall over training.

    .venv/bin/python benchmarks/lfw_gap.py --person Colin_Powell --iterations 100 \
        --variant default '{}' --variant unet-field '{"field": "unet", "lr": 0.001}' …

Each variant is a JSON object of `EraseConfig` fields over the library's defaults. The run trains through
the one loop (checks every 10 steps, as `legato unlearn` logs them), writes `OUT/VARIANT/log.jsonl` and
prints one table: the gap and the drift at every check, and seconds per step. `--attack N` then attacks
each result as `benchmarks/lfw_forget.py` does, but on the loss side: a fresh class embedding for the person
is fitted (from the nobody row, Adam lr 0.01, N steps of 16) to the source model's own samples of the person
(flow-matching loss; no photo), and the table adds the share of the person's velocity gap that embedding
wins back on the held-out check states (0: the attack gets nothing back, 1: the person's velocities
entirely). `endpoint gap` is the same question asked of whole samples: from `--endpoints N` fixed noises,
the squared distance of the forgotten name's guided samples to the frozen model's "nobody" samples from the
same noise, as a share of the source's (0: the name draws exactly nobody's face, 1: the person's). This is
how the lfw-faces defaults were chosen (docs/reference/lfw-faces.md); it never reads the judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def _recovered(unet, teacher, checks, label: int, injected) -> float:
    """The share of the person's squared velocity gap to nobody that the attack's embedding wins back."""
    from legato.lfwfaces.train import velocity

    y = torch.full((len(checks.person_x),), label, dtype=torch.long)
    frozen = velocity(teacher, checks.person_x, checks.person_t, y)
    attacked = velocity(unet, checks.person_x, checks.person_t, y)  # the hook puts the fitted row in
    left = (attacked - frozen).pow(2).mean() / (checks.nobody_at_person - frozen).pow(2).mean()
    return float(1.0 - left)


def velocity_attack(world, unet, teacher, checks, label: int, steps: int, seed: int = 0) -> float:
    """Fit a fresh embedding for `label` to the source's own samples of the person; return `_recovered`."""
    from legato.lfwfaces.attack import _Injected
    from legato.lfwfaces.train import velocity
    from legato.lfwfaces.world import initial_noise, sample

    samples = sample(world, torch.full((32,), label, dtype=torch.long), unet=teacher,
                     noise=initial_noise(32, world.size, seed + 401))
    unet.requires_grad_(False)
    injected = _Injected(unet, label, unet.class_embedding.weight[world.null_class])
    opt = torch.optim.Adam([injected.vector], lr=1e-2)
    g = torch.Generator().manual_seed(seed + 402)
    try:
        for _ in range(steps):
            x1 = samples[torch.randint(0, len(samples), (16,), generator=g)]
            x0 = torch.randn(x1.shape, generator=g)
            t = torch.rand(16, generator=g)
            xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
            loss = (velocity(unet, xt, t, torch.full((16,), label, dtype=torch.long)) - (x1 - x0)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return _recovered(unet, teacher, checks, label, injected)
    finally:
        injected.remove()


@torch.no_grad()
def endpoint_gap(world, unet, teacher, label: int, n: int, seed: int = 0) -> float:
    """‖x(name) − x_frozen(nobody)‖² / ‖x_frozen(name) − x_frozen(nobody)‖² over `n` guided samples."""
    from legato.lfwfaces.world import initial_noise, sample

    noise = initial_noise(n, world.size, seed + 501)
    name = torch.full((n,), label, dtype=torch.long)
    nobody = sample(world, torch.full((n,), world.null_class, dtype=torch.long), unet=teacher, noise=noise)
    before = sample(world, name, unet=teacher, noise=noise)
    after = sample(world, name, unet=unet, noise=noise)
    return float((after - nobody).pow(2).mean() / (before - nobody).pow(2).mean())


def train(person: str, overrides: dict, iterations: int, out: Path, attack: int = 0, endpoints: int = 32) -> list[dict]:
    from legato.lfwfaces.erase import (
        EraseConfig,
        EraseObjective,
        Student,
        build_check_states,
        build_pool,
        stop_scores,
    )
    from legato.lfwfaces.world import GUIDANCE, STEPS, load_world
    from legato.unlearning import loop

    config = EraseConfig(**{"iterations": iterations, **overrides}).validate()
    world = load_world()
    label = world.label_of(person)
    pool = build_pool(world, label, config, STEPS, GUIDANCE)
    checks = build_check_states(world, label, config, STEPS, GUIDANCE)
    torch.manual_seed(config.seed)
    student = Student(world, label, config)
    settings = loop.LoopSettings(iterations=config.effective_iterations, lr=config.effective_lr, seed=config.seed,
                                 log_every=10, checkpoint_every=10**9, eval_every=10, stop_every=10,
                                 log_first=True)

    def scores(unet) -> dict:
        return {k: v for k, v in stop_scores(unet, label, checks).items() if k != "passed"}

    out.mkdir(parents=True, exist_ok=True)
    loop.run(EraseObjective(student, pool, config), settings, out, resume=False, progress=False,
             quick_scores=scores)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "forget_gap" in r]
    if endpoints:
        rows[-1]["endpoint_gap"] = endpoint_gap(world, student.unet, student.teacher, label, endpoints, config.seed)
    if attack:
        rows[-1]["attack_recovered"] = velocity_attack(world, student.unet, student.teacher, checks, label, attack,
                                                       config.seed)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--person", default="Colin_Powell", help="the tuning person (left out of every table)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    parser.add_argument("--attack", type=int, default=0, metavar="N", help="attack each result, N steps")
    parser.add_argument("--endpoints", type=int, default=32, metavar="N", help="samples behind the endpoint gap")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lfw_gap")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {name: train(args.person, json.loads(spec), args.iterations, args.out / name, args.attack,
                           args.endpoints) for name, spec in args.variant}
    steps = sorted({r["step"] for rows in results.values() for r in rows})
    print(f"{args.person}: forget_gap / kept_drift at each check (lower is better for both); one torch thread\n")
    attacked = (" | endpoint gap" if args.endpoints else "") + (" | attack wins back" if args.attack else "")
    print("| variant | " + " | ".join(f"step {s}" for s in steps) + f" | s / step{attacked} |")
    print("|---|" + "---|" * (len(steps) + 1 + bool(args.endpoints) + bool(args.attack)))
    for name, rows in results.items():
        by_step = {r["step"]: r for r in rows}
        cells = [f"{by_step[s]['forget_gap']:.3f} / {by_step[s]['kept_drift']:.3f}" if s in by_step else "—"
                 for s in steps]
        won = f" {rows[-1]['endpoint_gap']:.3f} |" if args.endpoints else ""
        won += f" {rows[-1]['attack_recovered']:.2f} |" if args.attack else ""
        print(f"| {name} | " + " | ".join(cells) + f" | {rows[-1]['seconds'] / rows[-1]['step']:.2f} |{won}")


if __name__ == "__main__":
    main()
