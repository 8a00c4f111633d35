"""`load(spec)`: pick an identity model by name, as `--identity-model` does.

Specs: `dlib` | `arcface:PATH` (IR-SE50, `model_ir_se50.pth`) | `curricularface:PATH` (IR-101,
`CurricularFace_Backbone.pth`) | `synthfaces` (the default world's encoder, which its losses use) |
`synthfaces-judge` (the default world's independent judge, used by evaluation only).
"""

from __future__ import annotations

from collections.abc import Callable

from legato.errors import InputError
from legato.identity.base import IdentityModel


def _dlib(arg: str | None) -> IdentityModel:
    from legato.identity.dlib_model import DlibModel

    return DlibModel()


def _arcface(arg: str | None) -> IdentityModel:
    from legato.identity.arcface import IRSE50Model

    return IRSE50Model.from_file(_need_path("arcface", arg))


def _curricularface(arg: str | None) -> IdentityModel:
    from legato.identity.arcface import IR101Model

    return IR101Model.from_file(_need_path("curricularface", arg))


def _synthfaces(arg: str | None) -> IdentityModel:
    from legato import synthfaces
    from legato.identity.wrapped import as_identity_model

    return as_identity_model(synthfaces.load_identity_model(), name="synthfaces")


def _synthfaces_judge(arg: str | None) -> IdentityModel:
    from legato.identity.wrapped import as_identity_model
    from legato.synthfaces.identity_encoder import load_judge_model

    return as_identity_model(load_judge_model(), name="synthfaces-judge")


def _need_path(kind: str, arg: str | None) -> str:
    if not arg:
        raise InputError(f"identity model {kind!r} needs a weights file: --identity-model {kind}:PATH")
    return arg


REGISTRY: dict[str, Callable[[str | None], IdentityModel]] = {
    "dlib": _dlib,
    "arcface": _arcface,
    "curricularface": _curricularface,
    "synthfaces": _synthfaces,
    "synthfaces-judge": _synthfaces_judge,
}


def load(spec: str) -> IdentityModel:
    """The identity model named by `spec` (`name` or `name:PATH`); see the module docstring."""
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in REGISTRY:
        raise InputError(
            f"unknown identity model {spec!r}; choose one of: dlib, arcface:PATH, "
            "curricularface:PATH, synthfaces, synthfaces-judge"
        )
    return REGISTRY[name](arg or None)
