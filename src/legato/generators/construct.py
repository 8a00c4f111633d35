"""Build a network from a checkpoint's constructor arguments and load its tensors — the step every native
reimplementation of a pickled network (StyleGAN2, EG3D) shares."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from legato.errors import CheckpointError


def construct_and_load(cls: type[nn.Module], kwargs: Mapping, tensors: Mapping[str, torch.Tensor], *, source: str,
                       kind: str, constructor_errors: tuple[type[Exception], ...] = (TypeError,)) -> nn.Module:
    """`cls(**kwargs)` with `tensors` loaded `strict=True` (fp16 converted to float32, the computing type).

    Constructor failures of the given types and tensors that do not fit become `CheckpointError`s naming
    `source` and `kind` (e.g. "EG3D").
    """
    try:
        net = cls(**kwargs)
    except constructor_errors as e:
        raise CheckpointError(f"{source}: unexpected {kind} constructor arguments ({' '.join(str(e).split())})") from e
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())  # torch's report spans lines: one line for the user
        detail = re.sub(r"^Error\(s\) in loading state_dict for \w+:\s*", "", detail)
        raise CheckpointError(f"{source}: the {kind} tensors do not fit the network built from its arguments: "
                              f"{detail[:400]}") from e
    return net
