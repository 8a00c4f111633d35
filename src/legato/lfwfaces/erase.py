"""Forget a person of `lfw-faces` as the concept erasers forget a name, through the one training loop.

The anchor is the world's "nobody" class (the label dropped in training, which guidance already uses):
the person's conditional velocity is sent to the frozen model's "nobody" velocity, so with the person's
name the flow draws a face of nobody in particular instead of noise. Losses, on points x_t of the frozen
model's own trajectories (no photo is needed, as ESD trains on its model's own generations):
- forget: ‖v(x_t, t | person) − v_frozen(x_t, t | nobody)‖² on states of the person's trajectories and of
  other people's trajectories (where a changed trajectory goes);
- retain: ‖v(x_t, t | p) − v_frozen(x_t, t | p)‖² for the other people p and for "nobody" (guidance needs it);
- trajectory consistency (`legato` only, off unless `lambda_trajectory` is given): the adapters' mean squared
  ODE step (`legato.ode`).

Methods (`METHODS`), each with its dial s ∈ [0, 1]:
- `legato`: Neural-ODE adapters (the `unet` field) after UNet blocks, base frozen; s scales the time span;
- `residual`: the same field applied once, x + s·f(x);
- `finetune`: every UNet weight (ESD-style); s interpolates the weights, θ₀ + s·(θ₁ − θ₀);
- `lora`: PEFT LoRA on the UNet's convolutions and attention projections; s is PEFT's scale;
- `embedding`: no training — the person's class embedding is overwritten by the nobody class's (the floor
  a weight method must beat, since a fresh embedding brings the person back); s interpolates the row.

The judge (`lfwfaces.judge`, dlib) is used by `evaluate` only; nothing here trains or stops on it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from legato.errors import InputError, TrainingError
from legato.unlearning.config import TrainingOptions
from legato.unlearning.methods.dials import WeightInterpolation

METHODS = ("legato", "residual", "finetune", "lora", "embedding")
UNET_FIELDS = ("unet", "unet-emb")  # the adapter fields for UNet blocks (`ode.fields`)
# the adapters' defaults (the `unet` field, lr 3e-3, 60 steps) were chosen on the tuning person's velocity
# gap and a loss-side attack, never on dlib (docs/reference/lfw-faces.md, "Why these defaults")
DEFAULT_LR = {"legato": 3e-3, "residual": 3e-3, "finetune": 2e-5, "lora": 1e-3}
DEFAULT_ITERATIONS = {"legato": 60, "residual": 60, "finetune": 100, "lora": 100, "embedding": 0}


@dataclass
class EraseConfig(TrainingOptions):
    """Options of a forgetting run on lfw-faces: the shared training settings (`TrainingOptions`: method,
    iterations, lr, seed, the adapters' ODE, the loop's) and this world's own. Defaults: the settings behind
    docs/reference/lfw-faces.md."""

    DEFAULT_ITERATIONS: ClassVar[dict[str, int]] = DEFAULT_ITERATIONS
    DEFAULT_LR: ClassVar[dict[str, float]] = DEFAULT_LR
    NOTHING_TO_TRAIN: ClassVar[tuple[str, ...]] = ("embedding",)

    batch_forget: int = 16
    batch_retain: int = 32
    # no trajectory-consistency term by default here (the reference's legato has one): on both tuning people
    # it halved how close the forgotten name's samples came to nobody's (docs/reference/lfw-faces.md)
    lambda_trajectory: float = 0.0
    lambda_forget: float = 1.0
    lambda_retain: float = 1.0
    sites: tuple[str, ...] = ("mid_block", "up_blocks.0", "up_blocks.1")
    field: str = "unet"  # adapters: `unet` (features only) or `unet-emb` (also told the block's embedding)
    lora_rank: int = 4
    pool_forget: int = 32  # frozen trajectories of the person
    pool_retain: int = 1  # frozen trajectories per other person
    null_share: float = 0.125  # share of the retain batch labelled "nobody"
    # forget rows a step drawn from the frozen model's own "nobody" trajectories (under the person's name,
    # sent to nobody): the states a forgotten name's sampler visits once it follows nobody; taken from the
    # half of the forget rows that other people's states fill otherwise
    nobody_rows: int = 0

    def validate(self) -> EraseConfig:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r} for lfw-faces; choose one of {', '.join(METHODS)}")
        if self.field not in UNET_FIELDS:
            raise InputError(f"unknown adapter field {self.field!r} for lfw-faces; choose one of "
                             f"{', '.join(UNET_FIELDS)}")
        self.validate_training()
        for name in ("batch_forget", "batch_retain", "pool_forget", "pool_retain", "lora_rank"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("lambda_forget", "lambda_retain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number ≥ 0 (got {value})")
        if not 0 <= self.nobody_rows <= self.batch_forget // 2:
            raise InputError(f"nobody_rows must be in 0..batch_forget // 2 = {self.batch_forget // 2} "
                             f"(got {self.nobody_rows})")
        if not 0 <= self.null_share < 1:
            raise InputError(f"null_share must be in [0, 1) (got {self.null_share})")
        return self

    def to_dict(self) -> dict:
        return {**asdict(self), "sites": list(self.sites), "lr": self.effective_lr,
                "iterations": self.effective_iterations}


# -- the frozen model's trajectories ------------------------------------------------------------------
@dataclass
class Pool:
    """States x_t (and their t) of the frozen model's guided trajectories: the person's, and one set per
    other person with their labels."""

    forget_x: torch.Tensor
    forget_t: torch.Tensor
    other_x: torch.Tensor
    other_t: torch.Tensor
    other_y: torch.Tensor
    forget_y: torch.Tensor | None = None  # whose trajectory each forget state is (several people forgotten)
    nobody_x: torch.Tensor | None = None  # states of the frozen model's "nobody" trajectories (`nobody_rows`)
    nobody_t: torch.Tensor | None = None


def as_people(person) -> list[int]:
    """One label or several as a list of distinct labels (the people one run forgets)."""
    people = [int(person)] if isinstance(person, int) else [int(p) for p in person]
    if not people or len(set(people)) != len(people):
        raise InputError(f"the people to forget must be distinct and at least one (got {people})")
    return people


@torch.no_grad()
def trajectory_states(world, labels: torch.Tensor, noise: torch.Tensor, steps: int, guidance: float):
    """Every Euler state (t = 0, 1/steps, …, (steps−1)/steps) of the guided trajectories from `noise`."""
    from legato.lfwfaces.world import guided_velocity

    x, xs, ts = noise.clone(), [], []
    grid = torch.linspace(0.0, 1.0, steps + 1)
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        t = a.expand(x.shape[0])
        xs.append(x.clone())
        ts.append(t.clone())
        x = x + (b - a) * guided_velocity(world.unet, x, t, labels, world.null_class, guidance)
    return torch.cat(xs), torch.cat(ts)


def build_pool(world, person, config: EraseConfig, steps: int, guidance: float, cache: bool = True) -> Pool:
    """`pool_forget` trajectories of each person forgotten (one label or several) and `pool_retain` of every
    other person's. The others' come from one noise draw over all people (the forgotten rows dropped), so
    the source cache shares them between runs."""
    from legato.lfwfaces.source_cache import cached
    from legato.lfwfaces.world import initial_noise

    k, people = len(world.people), as_people(person)
    yf = torch.tensor(people, dtype=torch.long).repeat_interleave(config.pool_forget)
    xf, tf = trajectory_states(world, yf, initial_noise(len(yf), world.size, config.seed + 101), steps, guidance)
    y_all = torch.arange(k).repeat_interleave(config.pool_retain)

    def states_of(labels: torch.Tensor, seed: int):
        def compute() -> dict:
            x, t = trajectory_states(world, labels, initial_noise(len(labels), world.size, seed), steps, guidance)
            return {"x": x, "t": t}
        return compute

    got = cached(world, "trajectories", {"per_person": config.pool_retain, "seed": config.seed + 102,
                                         "steps": steps, "guidance": guidance},
                 states_of(y_all, config.seed + 102), cache)
    keep = (~torch.isin(y_all, torch.tensor(people))).repeat(steps)  # the states are laid out step-major
    pool = Pool(xf, tf, got["x"][keep], got["t"][keep], y_all.repeat(steps)[keep], forget_y=yf.repeat(steps))
    if config.nobody_rows:
        nobody = torch.full((config.pool_forget,), world.null_class, dtype=torch.long)
        got = cached(world, "nobody-trajectories", {"n": config.pool_forget, "seed": config.seed + 106,
                                                    "steps": steps, "guidance": guidance},
                     states_of(nobody, config.seed + 106), cache)
        pool.nobody_x, pool.nobody_t = got["x"], got["t"]
    return pool


# -- the check that stops a run (the model's own velocities; dlib never) -------------------------------
# A priori, not tuned on any recognizer: the person counts as forgotten when at most a tenth of the squared
# gap between their conditional velocity and the nobody class's is left (a third of it in norm, so that
# with guidance 1.5 the guided push towards the person is at most half the unguided model's); the others
# count as kept while each drifted by at most a tenth of their own squared gap to nobody.
STOP_FORGET_GAP = 0.1
STOP_KEPT_DRIFT = 0.1
CHECK_TRAJECTORIES = 8  # of the person, from noise neither the pool nor the evaluation uses
CHECK_OTHERS = 16  # other people, one trajectory each
CHECK_STATES = 4  # states per trajectory (t = 0, 1/4, 1/2, 3/4 on the default 20-step grid)


@dataclass
class CheckStates:
    """Held-out states and the frozen model's velocities at them, fixed before training."""

    person_x: torch.Tensor
    person_t: torch.Tensor
    other_x: torch.Tensor
    other_t: torch.Tensor
    other_y: torch.Tensor
    nobody_at_person: torch.Tensor  # v_frozen(x | nobody) on the person's states: where v(x | person) goes
    person_gap: dict[int, float]  # per person forgotten: mean ‖v_frozen(x | person) − v_frozen(x | nobody)‖²
    frozen_at_other: torch.Tensor  # v_frozen(x | p) on the others' states: where v(x | p) stays
    other_gap: torch.Tensor  # per other state ‖v_frozen(x | p) − v_frozen(x | nobody)‖²
    person_y: torch.Tensor | None = None  # whose trajectory each of the person states is


@torch.no_grad()
def build_check_states(world, person, config: EraseConfig, steps: int, guidance: float) -> CheckStates:
    """`CHECK_TRAJECTORIES` held-out trajectories of each person forgotten (one label or several) and one of
    `CHECK_OTHERS` other people, every `steps // CHECK_STATES`-th state."""
    from legato.lfwfaces.train import velocity
    from legato.lfwfaces.world import initial_noise

    people = as_people(person)
    every = max(1, steps // CHECK_STATES)
    gen = torch.Generator().manual_seed(config.seed + 103)
    others = [p for p in range(len(world.people)) if p not in people]
    chosen = [others[i] for i in torch.randperm(len(others), generator=gen)[:CHECK_OTHERS].tolist()]
    yp = torch.tensor(people, dtype=torch.long).repeat_interleave(CHECK_TRAJECTORIES)
    yo = torch.tensor(chosen, dtype=torch.long)
    xp, tp = _every(trajectory_states(world, yp, initial_noise(len(yp), world.size, config.seed + 104), steps,
                                      guidance), steps, every)
    xo, to = _every(trajectory_states(world, yo, initial_noise(len(yo), world.size, config.seed + 105), steps,
                                      guidance), steps, every)
    oy = yo.repeat(len(xo) // len(yo))
    null = world.null_class
    teacher = world.unet
    py = yp.repeat(len(xp) // len(yp))  # step-major, as the states
    nobody_p = velocity(teacher, xp, tp, torch.full((len(xp),), null, dtype=torch.long))
    person_v = velocity(teacher, xp, tp, py)
    frozen_o = velocity(teacher, xo, to, oy)
    nobody_o = velocity(teacher, xo, to, torch.full((len(xo),), null, dtype=torch.long))
    gaps = {p: float((person_v - nobody_p)[py == p].pow(2).mean()) for p in people}
    return CheckStates(xp, tp, xo, to, oy, nobody_p, gaps, frozen_o, (frozen_o - nobody_o).pow(2).flatten(1).mean(1),
                       person_y=py)


def _every(states: tuple[torch.Tensor, torch.Tensor], steps: int, every: int):
    """Keep every `every`-th Euler state of `trajectory_states`' output (laid out step-major)."""
    return tuple(a.reshape(steps, -1, *a.shape[1:])[::every].flatten(0, 1) for a in states)


@torch.no_grad()
def stop_scores(unet, person, states: CheckStates) -> dict:
    """`forget_gap`: the share of the squared velocity gap to nobody still left (the largest over the people
    forgotten); `kept_drift`: the largest per-person squared drift of the others' velocities, as a share of
    their own gap to nobody; `passed` when both are within `STOP_FORGET_GAP` / `STOP_KEPT_DRIFT`."""
    from legato.lfwfaces.train import velocity

    vp = velocity(unet, states.person_x, states.person_t, states.person_y)
    left = (vp - states.nobody_at_person).pow(2)
    forget_gap = max(float(left[states.person_y == p].mean()) / max(gap, 1e-12)
                     for p, gap in states.person_gap.items())
    vo = velocity(unet, states.other_x, states.other_t, states.other_y)
    drift = (vo - states.frozen_at_other).pow(2).flatten(1).mean(1)
    per_person = [float(drift[states.other_y == p].sum() / states.other_gap[states.other_y == p].sum())
                  for p in states.other_y.unique().tolist()]
    kept_drift = max(per_person)
    return {"passed": forget_gap <= STOP_FORGET_GAP and kept_drift <= STOP_KEPT_DRIFT,
            "forget_gap": round(forget_gap, 5), "kept_drift": round(kept_drift, 5)}


# -- the trained thing and its dial -------------------------------------------------------------------
class Student:
    """The person's forgetting on the world's UNet: the shared methods' `Trainable` (what trains, its state
    and its dial: `unlearning.methods.modules`), the person, and `teacher`, a frozen copy of the source."""

    def __init__(self, world, person, config: EraseConfig) -> None:
        from legato.unlearning.methods import modules

        self.people = as_people(person)  # one label or several: the people this run forgets
        self.person = self.people[0]
        self.world, self.config, self.method = world, config, config.method
        self.teacher = copy.deepcopy(world.unet).eval().requires_grad_(False)
        self.unet = world.unet
        method = config.method
        if method in modules.ADAPTER_METHODS:
            self.trainable = modules.ode_adapters(self.unet, method, list(config.sites),
                                                  _site_channels(self.unet, config.sites), hidden=config.hidden,
                                                  t_end=config.t_end, step_size=config.step_size,
                                                  solver=config.solver, field=config.field,
                                                  condition_dim=_embedding_width(self.unet, config.field))
        elif method == "finetune":
            self.trainable = modules.full_finetune(self.unet, method, copy_model=False)
        elif method == "lora":
            self.trainable = modules.peft_lora(self.unet, _lora_targets(self.unet, config.sites), config.lora_rank)
        else:  # embedding: nothing trains; the person's row is overwritten by nobody's (`finish_training`)
            from legato.unlearning.methods.base import Trainable

            weight = self.unet.class_embedding.weight
            self.trainable = Trainable(method, self.unet, [], dial=WeightInterpolation(
                {"class_embedding.weight": weight}, {"class_embedding.weight": weight}))
        self.adapters = self.trainable.adapter_set
        self.params = self.trainable.params

    @property
    def num_trainable(self) -> int:
        if self.method == "embedding":
            return int(self.unet.class_embedding.weight.shape[1]) * len(self.people)  # a row each
        return self.trainable.num_trainable()

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return self.trainable.state_dict()

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.trainable.load_state_dict(state)

    def trajectory_loss(self) -> torch.Tensor:
        """The adapters' trajectory term (`legato`; the residual's records are cleared and add nothing)."""
        return self.trainable.trajectory_loss(torch.zeros(()))

    @torch.no_grad()
    def finish_training(self) -> None:
        self.unet.requires_grad_(False)
        dial = self.trainable.dial
        if self.method == "embedding":
            weight = self.unet.class_embedding.weight
            weight[self.people] = weight[self.world.null_class].clone()
        if isinstance(dial, WeightInterpolation):  # what training left is strength 1
            dial.capture()
        dial.strength = 1.0

    def set_strength(self, s: float) -> None:
        self.trainable.dial.strength = s


def _site_channels(unet, sites) -> dict[str, int]:
    modules = dict(unet.named_modules())
    out = {}
    for site in sites:
        block = modules.get(site)
        if block is None:
            blocks = [n for n in modules if n == "mid_block" or n.count(".") == 1 and n.split(".")[0] in
                      ("down_blocks", "up_blocks")]
            raise InputError(f"the UNet has no block {site!r}; adapter sites are blocks such as {', '.join(blocks)}")
        resnets = getattr(block, "resnets", None)
        if not resnets:
            raise InputError(f"block {site!r} has no resnets to read its output channels from")
        out[site] = int(resnets[-1].out_channels)
    return out


def _embedding_width(unet, field: str) -> int | None:
    """The width of the embedding a UNet's blocks are given (what the `unet-emb` field reads), else None."""
    if field != "unet-emb":
        return None
    linear = getattr(getattr(unet, "time_embedding", None), "linear_2", None)
    if not isinstance(linear, nn.Linear):
        raise InputError("the unet-emb field needs a UNet with a time embedding (diffusers' time_embedding)")
    return int(linear.out_features)


def _lora_targets(unet, sites) -> list[str]:
    """Full module names of the convolutions and attention projections inside the adapter sites' blocks."""
    names = []
    for name, module in unet.named_modules():
        if not any(name.startswith(site + ".") for site in sites):
            continue
        leaf = name.rsplit(".", 1)[-1]
        conv = isinstance(module, nn.Conv2d) and leaf in ("conv1", "conv2")
        projection = isinstance(module, nn.Linear) and (leaf in ("to_q", "to_k", "to_v") or name.endswith(".to_out.0"))
        if conv or projection:
            names.append(name)
    if not names:
        raise InputError(f"no convolution or attention projection inside {list(sites)} for LoRA")
    return names


# -- the objective for the one loop -------------------------------------------------------------------
class EraseObjective:
    """`unlearning.loop`'s objective for lfw-faces: forget, retain and trajectory terms on pooled states."""

    def __init__(self, student: Student, pool: Pool, config: EraseConfig) -> None:
        self.student, self.pool, self.config = student, pool, config
        names = [student.world.people[p] for p in student.people]
        self.name = f"{config.method}, {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        self.model, self.params = student.unet, student.params

    def state_dict(self) -> dict:
        return self.student.trainable_state()

    def load_state_dict(self, state: dict) -> None:
        self.student.load_trainable_state(state)

    def setup(self) -> None:
        pass

    def begin(self, start: int) -> None:
        pass

    def end(self) -> None:
        self.student.finish_training()

    def progress_info(self, losses: dict) -> str:
        return f"loss {losses['total']:.4f} (forget {losses['forget']:.4f}, retain {losses['retain']:.4f})"

    def step(self, step: int, gen: torch.Generator) -> dict:
        from legato.lfwfaces.train import velocity

        cfg, pool, st = self.config, self.pool, self.student
        null = st.world.null_class
        nf = cfg.batch_forget
        half = nf // 2  # half from the person's trajectories, half from other people's
        i_f = torch.randint(0, len(pool.forget_x), (nf - half,), generator=gen)
        i_o = torch.randint(0, len(pool.other_x), (half + cfg.batch_retain,), generator=gen)
        xf = torch.cat([pool.forget_x[i_f], pool.other_x[i_o[:half]]])
        tf = torch.cat([pool.forget_t[i_f], pool.other_t[i_o[:half]]])
        if cfg.nobody_rows:  # the last of the other people's rows give way to nobody's own states
            i_n = torch.randint(0, len(pool.nobody_x), (cfg.nobody_rows,), generator=gen)
            xf[nf - cfg.nobody_rows:], tf[nf - cfg.nobody_rows:] = pool.nobody_x[i_n], pool.nobody_t[i_n]
        xr, tr, yr = pool.other_x[i_o[half:]], pool.other_t[i_o[half:]], pool.other_y[i_o[half:]].clone()
        yr[torch.rand(len(yr), generator=gen) < cfg.null_share] = null
        if len(st.people) == 1:
            yf = torch.full((nf,), st.person, dtype=torch.long)
        else:  # each person's own states under their name; other people's states under a forgotten name
            named = torch.tensor(st.people)[torch.randint(0, len(st.people), (half,), generator=gen)]
            yf = torch.cat([pool.forget_y[i_f], named])
        with torch.no_grad():
            target = velocity(st.teacher, torch.cat([xf, xr]), torch.cat([tf, tr]),
                              torch.cat([torch.full((nf,), null, dtype=torch.long), yr]))
        v = velocity(st.unet, torch.cat([xf, xr]), torch.cat([tf, tr]),
                     torch.cat([yf, yr]))
        loss_forget = (v[:nf] - target[:nf]).pow(2).mean()
        loss_retain = (v[nf:] - target[nf:]).pow(2).mean()
        loss_traj = st.trajectory_loss()
        loss = cfg.lambda_forget * loss_forget + cfg.lambda_retain * loss_retain + cfg.lambda_trajectory * loss_traj
        if not torch.isfinite(loss):
            raise TrainingError(f"the forgetting loss became {loss.item()} at step {step}; lower --lr")
        loss.backward()
        return {"total": loss.item(), "forget": loss_forget.item(), "retain": loss_retain.item(),
                "trajectory": float(loss_traj.detach())}
