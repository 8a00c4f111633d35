"""Neural-ODE adapters for any frozen `torch.nn.Module` (never imports a generator)."""

from legato.ode.adapter import ODEAdapter, trajectory_consistency
from legato.ode.adapter_set import AdapterConfig, AdapterSet, adapter_sets, attach, set_adapters
from legato.ode.bundle import load_bundle, read_config, save_bundle
from legato.ode.fields import Conv1x1Field, UNetField
from legato.ode.fingerprint import fingerprint
from legato.ode.strength_map import StrengthMap

__all__ = [
    "AdapterConfig",
    "AdapterSet",
    "Conv1x1Field",
    "ODEAdapter",
    "StrengthMap",
    "UNetField",
    "adapter_sets",
    "attach",
    "fingerprint",
    "load_bundle",
    "read_config",
    "save_bundle",
    "set_adapters",
    "trajectory_consistency",
]
