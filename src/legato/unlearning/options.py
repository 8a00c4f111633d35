"""One options layer between flat settings and `UnlearnConfig`, for every way a run is asked for.

`legato unlearn`'s options, a `legato batch` request's keys and `"options"`, and the benchmarks' `--set
KEY=VALUE` all use the same flat names: each `UnlearnConfig` field by its own name, and each loss weight
as `lambda_<term>` (`lambda_global` for `LossWeights.global_`). `config_for` applies them the way
`UnlearnConfig.for_generator` layers settings (reference, backend, preset, then what was given);
`evaluation_sizes` gives the sample sizes a preset implies (the reference's FID on 5,000 samples).
"""

from __future__ import annotations

import dataclasses
import difflib

from legato.errors import InputError
from legato.unlearning.config import LossWeights, UnlearnConfig

REFERENCE_N_FID = 5000  # the papers' FID sample size (LEGATO/GUIDE evaluate_fid.py)
DEFAULT_N_FID = 1000
DEFAULT_N_RANDOM = 100


def _weight_name(term: str) -> str:
    return "lambda_" + term.rstrip("_")


SETTINGS = tuple(f.name for f in dataclasses.fields(UnlearnConfig) if f.name != "weights")
WEIGHTS = tuple(_weight_name(f.name) for f in dataclasses.fields(LossWeights))
NAMES = SETTINGS + WEIGHTS  # every flat name, in the config's order
_TERM = {_weight_name(f.name): f.name for f in dataclasses.fields(LossWeights)}


def _normal(name: str) -> str:
    return "lambda_global" if name == "lambda_global_" else name  # the field's own spelling, also accepted


def check_names(flat: dict, where: str = "option") -> None:
    """One clear error for a name that is no setting (with the nearest one, when there is a near one)."""
    unknown = sorted({_normal(n) for n in flat} - set(NAMES))
    if unknown:
        near = difflib.get_close_matches(unknown[0], NAMES, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise InputError(f"unknown {where}(s) {', '.join(unknown)}{hint}; the settings are those of "
                         "`legato unlearn --help`, with underscores")


def config_for(generator, flat: dict) -> UnlearnConfig:
    """The validated config of `generator` with the flat settings `flat` (values of None are left out)."""
    check_names(flat)
    overrides = {}
    for name, value in flat.items():
        if value is None:
            continue
        name = _normal(name)
        overrides[f"lambda_{_TERM[name]}" if name in _TERM else name] = value
    config = UnlearnConfig.for_generator(generator, **overrides)
    config.validate()
    return config


def flatten(config: UnlearnConfig) -> dict:
    """The flat settings of `config` (so `config_for(generator, flatten(c))` rebuilds `c` for any backend)."""
    flat = {name: getattr(config, name) for name in SETTINGS}
    flat.update({name: getattr(config.weights, term) for name, term in _TERM.items()})
    return flat


def parse(name: str, text: str):
    """`text` as the type of setting `name`'s default (`--set KEY=VALUE`); one clear error otherwise."""
    check_names({name: None}, "setting")
    name = _normal(name)
    default = getattr(LossWeights(), _TERM[name]) if name in _TERM else getattr(UnlearnConfig(), name)
    if default is None:  # settings whose default is "none" (lora_rank, micro_batch, gate_hidden, preset)
        fields = {f.name: f for f in dataclasses.fields(UnlearnConfig)}
        kind = str(fields[name].type)
        default = 0 if "int" in kind else ""
    if text.lower() == "none":
        return None
    try:
        if isinstance(default, bool):
            return {"true": True, "false": False}[text.lower()]
        return type(default)(text)
    except (KeyError, ValueError) as e:
        raise InputError(f"{name}={text!r}: expected a {type(default).__name__}") from e


def backend_config(cls, flat: dict):
    """A backend's own config (`cls`, a `config.TrainingOptions` subclass: lfw-faces, the digits flow) from
    the same flat settings: each of its fields that `flat` gives (None left out) under the same name, then
    its `validate()`. Settings it does not have are not its business (the other backends')."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in flat.items() if k in names and v is not None}).validate()


def evaluation_sizes(config: UnlearnConfig, n_random: int | None = None, n_fid: int | None = None) -> tuple[int, int]:
    """The evaluation's sample sizes: what was given, else the preset's (reference: FID on 5,000), else the
    defaults (100 random people, FID on 1,000)."""
    if n_fid is None:
        n_fid = REFERENCE_N_FID if config.preset == "reference" else DEFAULT_N_FID
    return (DEFAULT_N_RANDOM if n_random is None else int(n_random)), int(n_fid)
