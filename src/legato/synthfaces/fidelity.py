"""How faithfully the generator reproduces the SynthFaces world, judged by the identity encoder."""

from __future__ import annotations

import torch

from legato.synthfaces import params as P


def measure_fidelity(n: int = 500, seed: int = 0, batch: int = 50, generator=None, identity_model=None) -> dict:
    """For `n` z's and random cameras: is G's image the same person as the render of the same parameters?
    And does the same ws stay the same person (vs the front view) across the 11 evaluation yaws?"""
    from legato.synthfaces.generator import load_generator
    from legato.synthfaces.identity_encoder import load_identity_model
    from legato.synthfaces.renderer import render

    gen = generator if generator is not None else load_generator()
    idm = identity_model if identity_model is not None else load_identity_model()
    g = torch.Generator().manual_seed(seed)
    match, yaw_ok, yaw_total, cos_render = 0, 0, 0, []
    views = P.views(11)
    with torch.no_grad():
        for i in range(0, n, batch):
            b = min(batch, n - i)
            z = torch.randn(b, P.Z_DIM, generator=g)
            cam = P.random_camera(b, generator=g)
            idn, nui = P.split(P.z_to_params(z))
            fake = gen(z, cam)
            real = render(idn, nui, cam)
            cos = (idm.embed(fake) * idm.embed(real)).sum(1)
            cos_render.append(cos)
            match += int((cos >= idm.threshold).sum())
            ws = gen.mapping(z)
            front = idm.embed(gen.synthesis(ws, torch.zeros(b, 2)))
            for v in views:
                e = idm.embed(gen.synthesis(ws, v[None].expand(b, -1)))
                yaw_ok += int(((e * front).sum(1) >= idm.threshold).sum())
                yaw_total += b
    cos_all = torch.cat(cos_render)
    return {"n": n, "threshold": idm.threshold, "render_match_rate": match / n,
            "render_cos_mean": float(cos_all.mean()), "yaw_consistency_rate": yaw_ok / yaw_total,
            "yaw_pairs": yaw_total}
