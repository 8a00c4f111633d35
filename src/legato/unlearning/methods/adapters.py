"""`legato` (Neural-ODE adapters after each synthesis block, base frozen: the method) and `residual` (the same
field applied once, x + f(x): no ODE, no trajectory term). Both save an adapter bundle (`ode.bundle`)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from legato.ode import attach, load_bundle, save_bundle
from legato.ode.bundle import PEFT_TYPE
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.methods.base import UNREADABLE, LoadedResult, Method, Trainable, bundle_peft_type
from legato.unlearning.methods.gates import GateMembership, keyed_setup


def _build(generator: nn.Module, config: UnlearnConfig, adapter_name: str) -> Trainable:
    if config.method == "legato":
        settings = dict(hidden=config.hidden, field=config.field, t_end=config.t_end, step_size=config.step_size,
                        method=config.solver, gate_hidden=config.gate_hidden, gate_space=config.gate_space,
                        gate_floor=config.gate_floor)
    else:  # one Euler step of length 1 is exactly x + f(x); strength s makes it x + s·f(x)
        settings = dict(hidden=config.hidden, field=config.field, t_end=1.0, step_size=1.0, method="euler",
                        gate_hidden=config.gate_hidden, gate_space=config.gate_space,
                        gate_floor=config.gate_floor)
    adapter_set = attach(generator, generator.adapter_sites(), name=adapter_name, **settings)
    named = adapter_parameters(adapter_set)
    return Trainable(config.method, generator, list(named.values()), adapter_set=adapter_set, dial=adapter_set,
                     uses_trajectory=config.method == "legato", trajectory_mode=config.trajectory,
                     trajectory_site=config.trajectory_site, _named=named,
                     save_fn=lambda directory, metadata: save_bundle(adapter_set, directory, metadata=metadata),
                     membership=GateMembership(adapter_set),
                     on_setup=[keyed_setup(adapter_set, generator)] if config.field == "keyed" else [])


def adapter_parameters(adapter_set) -> dict:
    """The adapter set's parameters by `site::name` (the keys of checkpoints and of `--extend`)."""
    return {f"{site}::{n}": p for site in adapter_set.sites for n, p in adapter_set.adapter(site).named_parameters()}


def _holds(directory: Path) -> bool:
    # an unreadable config counts as ours (the file has our name): load_bundle gives the precise error
    return bundle_peft_type(directory) in (PEFT_TYPE, UNREADABLE)


def _load(directory: Path, generator: nn.Module) -> LoadedResult:
    adapter_set = load_bundle(directory, generator)
    return LoadedResult(adapter_set.metadata.get("method", "legato"), generator, adapter_set,
                        state=adapter_parameters(adapter_set))


LEGATO = Method("legato", "Neural-ODE adapters after each synthesis block, base frozen; trajectory-consistency term",
                "the ODE's time span (strength s integrates [0, s·T])", _build, _holds, _load)
RESIDUAL = Method("residual", "the same adapter field applied once, x + f(x); no ODE, no trajectory term",
                  "the output scale (x + s·f(x))", _build, _holds, _load)
