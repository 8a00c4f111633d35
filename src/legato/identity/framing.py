"""How a photo is framed before a generator inverts it (`Generator.photo_framing`): FFHQ's alignment by
dlib's landmarks for NVIDIA's face models. It lives with the face tools it needs; `unlearning.run` hands
`photo_loader(generator)` to `inversion.sources.resolve_identity`, so the inversion layer needs no face
detector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from legato.errors import InputError


def photo_loader(generator) -> Callable[[str | Path, int], torch.Tensor]:
    """`(path, size) -> [1, 3, size, size]` photos framed as `generator` frames faces."""
    framing = getattr(generator, "photo_framing", None)
    return lambda path, size: align_photo(path, size, framing)


def align_photo(path: str | Path, size: int, framing: str | None) -> torch.Tensor:
    """One photo → `[1, 3, size, size]` in [-1, 1], framed as the generator frames a face.

    `framing="ffhq"`: dlib finds the face (the largest, when there are several) and its 68 landmarks; the eye
    centres, nose tip and mouth corners are moved by a similarity transform to where FFHQ's alignment puts
    them (`identity.align.FFHQ_POINTS`), the rest of the frame filled by reflection. Without a face (or
    without dlib) the photo is taken as it is, centre-cropped (`load_image`), with a warning on stderr: an
    image the generator made, or one already aligned, needs nothing more. `framing=None`: `load_image`.
    """
    from legato.inversion.images import load_image

    if framing is None:
        return load_image(path, size)
    if framing != "ffhq":
        raise InputError(f"unknown photo framing {framing!r} (known: ffhq)")
    import sys

    from legato.errors import LegatoError
    from legato.identity import faces
    from legato.identity.align import FFHQ_POINTS, similarity_transform, warp

    rgb, name = faces.read_rgb(path)
    try:
        face = faces.find_face(rgb, name, policy="largest")
        points = faces.arcface_points(rgb, face.box)
    except LegatoError as e:  # no face, or dlib missing
        print(f"warning: {e}; {name} is used as it is framed (centre-cropped), without face alignment",
              file=sys.stderr)
        return load_image(path, size)
    matrix = similarity_transform(points, FFHQ_POINTS * size)
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return warp(image, matrix, size, padding_mode="reflection").clamp(-1, 1)
