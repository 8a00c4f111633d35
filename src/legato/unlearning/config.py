"""Settings of one unlearning run. Defaults are the LEGATO/GUIDE reference code's settings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from legato.errors import InputError
from legato.ode.fields import GATE_SPACES

METHODS = ("legato", "guide", "residual", "lora", "salun", "baseline")  # unlearning.methods.REGISTRY
TARGETS = ("extra", "average", "extra-projected")
REDUCTIONS = ("mean", "sum")
TRAJECTORY_MODES = ("all", "reference")
TRAINING_CAMERAS = ("views", "continuous")
# Named departures from our defaults. "reference" reproduces the LEGATO/GUIDE code where its structure
# differs from ours (docs/reference/eg3d.md has the line-by-line reading): adjacency and global terms summed over
# their latents, the one-block / forgotten-latent trajectory term with its doubled last step, and a
# continuous training yaw instead of the evaluation views, and the ID loss's fixed face crop.
PRESETS = {
    "reference": {"reduction": "sum", "trajectory": "reference", "training_camera": "continuous",
                  "identity_crop": "reference", "dial": "time", "early_stop": False, "field": "conv1x1",
                  "dial_calibration": "none"},
}
IDENTITY_CROPS = ("align", "reference")
# what the strength dial is trained to mean: "time" (the reference: only the full time span is trained, so
# strength s is whatever the field does over [0, s·T]) or "path" (ours: the states at intermediate strengths
# are trained towards the source's images along the path from the person to the target, placed so that the
# identity score falls evenly and crosses the threshold at `dial_crossing`; `targets.dial_path`)
DIALS = ("time", "path")
# after training, what the user's strength s is mapped to on the dial's own scale: "none" (s itself, the
# reference), "loss-model" (the loss's identity model's score follows the path dial's profile: 1 at 0, its
# threshold at `dial_crossing`, the result's score at 1) or "image" (the loss model places the crossing at
# `dial_crossing`, the image's distance from the source grows evenly on either side); a stored monotone map
# (`unlearning.dial_calibration`)
DIAL_CALIBRATIONS = ("none", "loss-model", "image")
# --field gated: which latents the membership term opens the gate for: the forgotten ones ("targets"), or
# those and the adjacency latents around them ("neighbourhood": the gate opens for the region the adjacency
# term forgets, e.g. other photos of the person, not only the one given)
GATE_POSITIVES = ("targets", "neighbourhood")


@dataclass
class LossWeights:
    """λ of each term (reference: feature MSE 0.01, perceptual 1, identity 0.1; trajectory 1)."""

    feature: float = 0.01
    perceptual: float = 1.0
    identity: float = 0.1
    local: float = 1.0
    adjacency: float = 1.0
    global_: float = 1.0
    trajectory: float = 1.0
    # the gated field (`--field gated`): its gate is taught directly who is forgotten (the forgotten latents
    # open, others' latents shut; `methods.gates.GateMembership`); no effect on other fields
    gate: float = 1.0


@dataclass
class TrainingOptions:
    """The settings every backend's forgetting run shares, under the names `UnlearnConfig` and the options
    layer give them (`unlearning.options`: one flat name means one thing for every generator): the method,
    the one loop's settings and the adapters' ODE. A backend whose run is not an `UnlearnConfig` (lfw-faces,
    the digits flow) subclasses it, adds its own settings and its per-method defaults
    (`DEFAULT_ITERATIONS`, `DEFAULT_LR`; None in `iterations` / `lr` takes them)."""

    DEFAULT_ITERATIONS: ClassVar[dict[str, int]] = {}
    DEFAULT_LR: ClassVar[dict[str, float]] = {}
    NOTHING_TO_TRAIN: ClassVar[tuple[str, ...]] = ()  # methods that may run 0 iterations (an edit)

    method: str = "legato"
    iterations: int | None = None  # None: DEFAULT_ITERATIONS[method]
    lr: float | None = None  # None: DEFAULT_LR[method]
    seed: int = 0
    hidden: int = 32  # the adapter field's width
    t_end: float = 1.6  # t_end, step_size, solver: the LEGATO reference adapter settings
    step_size: float = 0.4
    solver: str = "euler"
    lambda_trajectory: float = 0.1
    log_every: int = 10
    checkpoint_every: int = 50  # steps between checkpoints in OUT.partial/ (what --resume continues from)
    eval_every: int = 0
    early_stop: bool = False
    stop_every: int = 10
    stop_patience: int = 2
    stop_consolidate: int = 0

    @property
    def effective_iterations(self) -> int:
        return self.DEFAULT_ITERATIONS.get(self.method, 0) if self.iterations is None else int(self.iterations)

    @property
    def effective_lr(self) -> float:
        return self.DEFAULT_LR.get(self.method, 0.0) if self.lr is None else float(self.lr)

    def validate_training(self) -> None:
        """One clear error for a shared setting out of range (a backend's `validate` checks its own)."""
        steps = self.effective_iterations
        if steps < 0 or (steps == 0 and self.method not in self.NOTHING_TO_TRAIN):
            raise InputError(f"--iterations must be at least 1 for {self.method} (got {steps})")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be positive (got {self.lr})")
        if not (self.t_end > 0 and self.step_size > 0):
            raise InputError(f"--t-end and --step-size must be positive (got {self.t_end}, {self.step_size})")
        if not (math.isfinite(self.lambda_trajectory) and self.lambda_trajectory >= 0):
            raise InputError(f"--lambda-trajectory must be a finite number ≥ 0 (got {self.lambda_trajectory})")
        for name in ("hidden", "log_every", "checkpoint_every", "stop_every", "stop_patience"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("eval_every", "stop_consolidate"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must not be negative (got {getattr(self, name)})")

    def loop_settings(self, log_first: bool = True):
        """What the one loop (`unlearning.loop.run`) reads of these settings."""
        from legato.unlearning.loop import LoopSettings

        return LoopSettings(iterations=self.effective_iterations, lr=self.effective_lr, seed=self.seed,
                            log_every=self.log_every, checkpoint_every=self.checkpoint_every,
                            eval_every=self.eval_every or self.stop_every, early_stop=self.early_stop,
                            stop_every=self.stop_every, stop_patience=self.stop_patience,
                            stop_consolidate=self.stop_consolidate, log_first=log_first)


@dataclass
class UnlearnConfig:
    method: str = "legato"
    iterations: int = 1000  # reference: 1,000 iterations
    lr: float = 1e-4  # reference: Adam, lr 1e-4
    # UFO target: w_avg − d·unit(w_u − w_avg) ("extra"), w_avg ("average"), or "extra" moved to the nearest
    # latent of the mapping network ("extra-projected": a person the generator draws, not a blend)
    target: str = "extra"
    # d as an absolute W-space distance ("30", the reference's value in EG3D's W space) or relative to the
    # median ‖w − w_avg‖ of random latents ("1x"): the relative form transfers across models.
    distance: str = "30"
    n_adjacent: int = 2  # reference: 2 adjacent latents per iteration
    alpha_max: str = "15"  # reference: α ~ U(0, 15) in EG3D's W space; absolute or relative like `distance`
    n_global: int = 2  # reference: 2 random latents for the global preservation loss
    weights: LossWeights = field(default_factory=LossWeights)
    # how the adjacency and global terms combine their latents: "mean" (ours) or "sum" (the reference code)
    reduction: str = "mean"
    # trajectory-consistency term: "all" (ours: every adapter, every latent) or "reference" (the code's: the
    # adapter at `trajectory_site`, the forgotten latent only, last step counted twice; `ode.adapter`)
    trajectory: str = "all"
    trajectory_site: int = -2  # EG3D's b128, the second-to-last of b8…b256
    # training camera per iteration: one of the evaluation views ("views", ours) or a yaw drawn uniformly
    # over their range ("continuous", the reference: U(−π/12, π/12) at pitch −0.2 on EG3D)
    training_camera: str = "views"
    # how the identity loss frames a face: "align" (ours: the identity model's own alignment, e.g. ArcFace's
    # five-point template) or "reference" (the code's fixed crop: resize 256, rows 35–222, columns 32–219)
    identity_crop: str = "align"
    preset: str | None = None  # the name of the preset applied, if any (recorded in config.json)
    # adapters (reference: one after conv1 of every synthesis block, 1×1 field, hidden 256, Euler 4×0.4)
    hidden: int = 256
    field: str = "conv1x1"
    gate_hidden: int | None = None  # --field gated: the gate MLP's width (None: the field's hidden)
    gate_positives: str = "targets"  # --field gated: GATE_POSITIVES
    gate_space: str = "latent"  # --field keyed: where the gate measures distance (ode.fields.GATE_SPACES)
    gate_floor: float = 0.0  # --field keyed: openness below this is 0, so strangers keep the source's face
    t_end: float = 1.6
    step_size: float = 0.4
    dial: str = "time"  # DIALS (the reference trains the full time span only)
    dial_crossing: float = 0.5  # dial="path": the strength at which the person stops being recognised
    dial_calibration: str = "none"  # DIAL_CALIBRATIONS (the reference: the strength is the time span itself)
    # early stop (ours; the reference trains a fixed count): every `stop_every` steps the loss's identity model
    # (never the judge) checks the forgotten latent on views it does not train on, the person's other photos
    # and a fixed set of strangers; `stop_patience` passes in a row end training. `iterations` stays the bound.
    early_stop: bool = False
    stop_every: int = 10
    stop_patience: int = 2
    stop_consolidate: int = 0  # steps trained on after the check has held (the forgotten face settles)
    solver: str = "euler"
    # lora: the rank of the updates (None: the rank whose parameter count comes nearest legato's adapters)
    lora_rank: int | None = None
    # salun: the fraction of synthesis weights the saliency mask keeps trainable (the paper's 50%)
    salun_keep: float = 0.5
    seed: int = 0
    log_every: int = 10  # losses into log.jsonl every K steps
    eval_every: int = 100  # id_target / id_preservation (collapse curve) every K steps
    checkpoint_every: int = 100
    perceptual: str = "auto"  # "auto" | "lpips" | "identity-features" | "multiscale-l1"
    # forgetting several people in one set (`--identity @FILE`): how many of them each step takes, each with
    # its local term and a share of the adjacency latents (one person: every step takes it)
    targets_per_step: int = 4
    # latents rendered and back-propagated together; None: all 1 + n_adjacent + n_global at once. Smaller
    # chunks bound memory; the loss and gradients (accumulated over the chunks) are the same.
    micro_batch: int | None = None
    # a photo identity: optimisation steps refining the encoder's latent (0: the encoder's latent as it is)
    refine_steps: int = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.target not in TARGETS:
            raise InputError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.iterations < 1:
            raise InputError(f"--iterations must be at least 1 (got {self.iterations})")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive (got {self.lr})")
        if self.refine_steps < 0:
            raise InputError(f"--refine-steps must not be negative (got {self.refine_steps})")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise InputError(f"--lora-rank must be at least 1 (got {self.lora_rank})")
        if not 0.0 < self.salun_keep <= 1.0:
            raise InputError(f"--salun-keep must be in (0, 1] (got {self.salun_keep})")
        if self.gate_positives not in GATE_POSITIVES:
            raise InputError(f"unknown --gate-positives {self.gate_positives!r}; choose one of "
                             f"{', '.join(GATE_POSITIVES)}")
        if self.gate_space not in GATE_SPACES:
            raise InputError(f"unknown --gate-space {self.gate_space!r}; choose one of {', '.join(GATE_SPACES)}")
        if not 0.0 <= self.gate_floor < 1.0:
            raise InputError(f"--gate-floor must be in [0, 1) (got {self.gate_floor})")
        if (self.gate_space != "latent" or self.gate_floor) and self.field != "keyed":
            raise InputError(f"--gate-space and --gate-floor are settings of --field keyed (this run: "
                             f"--field {self.field})")
        if self.gate_hidden is not None and self.gate_hidden < 1:
            raise InputError(f"--gate-hidden must be at least 1 (got {self.gate_hidden})")
        if self.targets_per_step < 1:
            raise InputError(f"--targets-per-step must be at least 1 (got {self.targets_per_step})")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise InputError(f"--micro-batch must be at least 1 (got {self.micro_batch})")
        import math
        from dataclasses import fields

        for f in fields(self):  # a NaN or infinite setting would only show up as a NaN loss much later
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"--{f.name.replace('_', '-')} must be a finite number (got {value})")
        for f in fields(self.weights):
            value = getattr(self.weights, f.name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"--lambda-{f.name.rstrip('_').replace('_', '-')} must be a finite number ≥ 0 "
                                 f"(got {value})")
        if not (self.t_end > 0 and self.step_size > 0):
            raise InputError(f"--t-end and --step-size must be positive (got {self.t_end}, {self.step_size})")
        for name in ("log_every", "eval_every", "checkpoint_every", "hidden"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        for name in ("n_adjacent", "n_global"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must not be negative (got {getattr(self, name)})")
        if self.stop_consolidate < 0:
            raise InputError(f"--stop-consolidate must be at least 0 (got {self.stop_consolidate})")
        if self.stop_every < 1 or self.stop_patience < 1:
            raise InputError(f"--stop-every and --stop-patience must be at least 1 (got {self.stop_every}, "
                             f"{self.stop_patience})")
        if not 0.0 < self.dial_crossing < 1.0:
            raise InputError(f"--dial-crossing must be in (0, 1) (got {self.dial_crossing})")
        for name, allowed in (("dial", DIALS), ("dial_calibration", DIAL_CALIBRATIONS), ("reduction", REDUCTIONS),
                              ("trajectory", TRAJECTORY_MODES),
                              ("training_camera", TRAINING_CAMERAS), ("identity_crop", IDENTITY_CROPS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"unknown {name.replace('_', ' ')} {getattr(self, name)!r}; choose one of "
                                 f"{', '.join(allowed)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)} (or none)")
        parse_distance(self.distance)
        parse_distance(self.alpha_max)

    @classmethod
    def for_generator(cls, generator, **overrides) -> UnlearnConfig:
        """Reference settings, then the backend's own recommendations (`unlearning_defaults`; its
        `"methods": {name: {...}}` entry adds settings for one method), then the preset (`preset=` among
        the overrides, else the backend's `default_preset`), then `overrides` (values of None are ignored)."""
        cfg = cls()
        backend = dict(getattr(generator, "unlearning_defaults", {}) or {})
        per_method = backend.pop("methods", {}) or {}
        given = {k: v for k, v in overrides.items() if v is not None}
        method = given.get("method", backend.get("method", cfg.method))
        preset = given.get("preset", getattr(generator, "default_preset", None))
        if preset == "none":  # the user's way to decline a backend's default preset
            preset = None
            given.pop("preset")
        if preset is not None and preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} (or none)")
        preset_values = {**PRESETS[preset], "preset": preset} if preset else {}
        # a backend may tune one method (e.g. the adapters' learning rate) without changing the others
        for source in (backend, dict(per_method.get(method, {})), preset_values, given):
            for key, value in source.items():
                if key.startswith("lambda_"):
                    setattr(cfg.weights, key[len("lambda_"):], value)
                else:
                    setattr(cfg, key, value)
        if cfg.field != "keyed":  # a backend's keyed-gate settings do not follow a run onto another field
            for key in ("gate_space", "gate_floor"):
                if key not in given:
                    setattr(cfg, key, getattr(cls(), key))
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = asdict(self.weights)
        return d


def parse_distance(text: str) -> tuple[float, bool]:
    """"30" → (30.0, absolute); "2x" → (2.0, relative to the typical ‖w − w_avg‖)."""
    s = str(text).strip().lower()
    relative = s.endswith("x")
    try:
        value = float(s[:-1] if relative else s)
    except ValueError as e:
        raise InputError(f"--distance {text!r}: give a number (absolute, e.g. 30) or a multiple like 2x") from e
    if value < 0:
        raise InputError(f"--distance must not be negative (got {text})")
    return value, relative
