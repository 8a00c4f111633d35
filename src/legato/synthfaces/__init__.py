"""SynthFaces: the embedded default world — a procedural face renderer with known identities, a small
StyleGAN2-style generator trained to reproduce it, an identity encoder and an inversion encoder, all
shipped as safetensors inside the package.

Public entry points (loaded lazily so `import legato.synthfaces` stays light):
- `photos(identity_seed, n, seed=0)` / `out_of_domain_photos(identity_seed, n, seed=0)` → `[n, 3, 64, 64]`
- `load_generator()`, `load_identity_model()`, `load_inverter()`
"""

from __future__ import annotations

from legato.lazy import lazy_getattr

_EXPORTS = {
    "photos": "legato.synthfaces.world",
    "out_of_domain_photos": "legato.synthfaces.world",
    "render": "legato.synthfaces.renderer",
    "load_generator": "legato.synthfaces.generator",
    "SynthFacesGenerator": "legato.synthfaces.generator",
    "load_identity_model": "legato.synthfaces.identity_encoder",
    "load_inverter": "legato.synthfaces.inverter",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
