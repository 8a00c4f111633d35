"""legato.identity: face-recognition networks that judge and drive forgetting, and face alignment.

- `load(spec)` → an `IdentityModel` (`dlib`, `arcface:PATH`, `curricularface:PATH`, `synthfaces`)
- `IdentityModel.embed(images)`, `.embed_photos(paths)`, `.same_person(a, b)`, `.threshold`
- `align_ffhq(images)`: differentiable alignment of generator outputs to the ArcFace crop
- `MTCNN.from_dir(DIR)`: the papers' face detector, for judging on MTCNN crops (`identity.cropped`)
"""

from __future__ import annotations

from legato.lazy import lazy_getattr

_EXPORTS = {
    "IdentityModel": "legato.identity.base",
    "load": "legato.identity.registry",
    "REGISTRY": "legato.identity.registry",
    "DlibModel": "legato.identity.dlib_model",
    "IRSE50Model": "legato.identity.arcface",
    "IR101Model": "legato.identity.arcface",
    "MTCNN": "legato.identity.mtcnn",
    "align_ffhq": "legato.identity.align",
    "align_points": "legato.identity.align",
    "similarity_transform": "legato.identity.align",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
