"""The SynthFaces renderer: a procedural, batched portrait of a head from (identity, nuisance, camera).

The head is an ellipsoid seen by an orthographic camera turned by (yaw, pitch). Every pixel inside its
silhouette is traced back to a point on the ellipsoid, which gives the skin shading (Lambert, light in
camera space) and the head-local coordinates on which the hair cap and the beard are drawn. Facial features
hang on 3D anchor points of the head surface; the anchors are rotated and projected, so they move like
points on a 3D head, shrink (foreshortening) and fade out when their surface turns away from the camera.
All shapes are soft (sigmoids of signed distances about half a pixel wide) so a small CNN can learn them.

Coordinates: image u (right) and v (down) in [-1, 1]; head-local x right, y down, z towards the camera.
In-domain parameters lie in [0, 1]; values outside are mapped by the same linear formulas (with clamps
that keep sizes positive), which gives unseen skin/hair colours and extreme shapes.
"""

from __future__ import annotations

import torch

from legato.synthfaces.params import N_IDENTITY, N_NUISANCE

_CHUNK = 64  # images per internal pass: keeps every [chunk, H, W] temporary inside the CPU cache
_ZOOM = 1.6  # image half-width seen by the camera is 1 / _ZOOM head-space units


def render(
    identity: torch.Tensor, nuisance: torch.Tensor, camera: torch.Tensor, size: int = 64
) -> torch.Tensor:
    """Render portraits.

    identity `[B, 21]`, nuisance `[B, 7]`, camera `[B, 2]` (yaw, pitch in radians) → images
    `[B, 3, size, size]` in [-1, 1]. Deterministic; runs under `torch.no_grad`.
    """
    if identity.ndim != 2 or identity.shape[1] != N_IDENTITY:
        raise ValueError(f"identity must be [B, {N_IDENTITY}], got {tuple(identity.shape)}")
    if nuisance.ndim != 2 or nuisance.shape[1] != N_NUISANCE:
        raise ValueError(f"nuisance must be [B, {N_NUISANCE}], got {tuple(nuisance.shape)}")
    if camera.ndim != 2 or camera.shape[1] != 2:
        raise ValueError(f"camera must be [B, 2] (yaw, pitch), got {tuple(camera.shape)}")
    if not identity.shape[0] == nuisance.shape[0] == camera.shape[0]:
        raise ValueError("identity, nuisance and camera must have the same batch size")
    device = identity.device
    idn, nui, cam = (t.detach().float().cpu() for t in (identity, nuisance, camera))
    grid = _grid(size)
    with torch.no_grad():
        out = [
            _render_chunk(idn[i : i + _CHUNK], nui[i : i + _CHUNK], cam[i : i + _CHUNK], grid, size)
            for i in range(0, idn.shape[0], _CHUNK)
        ]
    img = torch.cat(out) if out else torch.zeros(0, 3, size, size)
    return img.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0).to(device)


# ---------------------------------------------------------------------------------------------------------
# Small geometric helpers. Shapes: per-image scalars are [B, 1, 1]; maps are [B, H, W].


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = ((torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0) / _ZOOM
    return c.view(1, 1, size), c.view(1, size, 1)  # u [1, 1, W], v [1, H, 1]


def _col(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, 1)


def _soft(d: torch.Tensor, w: float) -> torch.Tensor:
    """Coverage of a shape from its signed distance `d` (negative inside), edge width `w`."""
    return torch.sigmoid(d.mul(-1.0 / w))


def _ellipse(u, v, cu, cv, ru, rv) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse."""
    rho = torch.sqrt(((u - cu) / ru).square() + ((v - cv) / rv).square() + 1e-9)
    return (rho - 1.0) * torch.minimum(ru, rv)


def _segment(u, v, au, av, bu, bv, ra, rb) -> torch.Tensor:
    """Signed distance to a segment a→b whose radius goes linearly from ra to rb (a tapered capsule)."""
    du, dv = bu - au, bv - av
    t = (((u - au) * du + (v - av) * dv) / (du * du + dv * dv + 1e-9)).clamp(0.0, 1.0)
    return torch.sqrt((u - au - t * du).square() + (v - av - t * dv).square() + 1e-9) - (ra + (rb - ra) * t)


def _hsv(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV → RGB, all [B]; hue wraps around. Returns [B, 3]."""
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h.remainder(1.0).unsqueeze(1) * 6.0).remainder(6.0)
    f = torch.minimum(kk, 4.0 - kk).clamp(0.0, 1.0)
    return v.unsqueeze(1) - v.unsqueeze(1) * s.unsqueeze(1) * f


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def _blend(img: torch.Tensor, color: torch.Tensor, alpha: torch.Tensor) -> None:
    """img [B, 3, H, W] ← color ([B, 3] or [B, 3, H, W]) over img with coverage alpha [B, H, W], in place."""
    if color.ndim == 2:
        color = color[:, :, None, None]
    img.lerp_(color.expand_as(img), alpha.unsqueeze(1).expand_as(img))


class _Head:
    """The posed head: rotation, center and semi-axes; projects head-local anchors to the image."""

    def __init__(self, ax, ay, az, yaw, pitch, cu, cv, jaw):
        self.a = torch.stack([ax, ay, az], 1)  # [B, 3]
        cy, sy, cp, sp = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
        z, o = torch.zeros_like(yaw), torch.ones_like(yaw)
        ry = torch.stack([cy, z, sy, z, o, z, -sy, z, cy], 1).view(-1, 3, 3)
        rx = torch.stack([o, z, z, z, cp, -sp, z, sp, cp], 1).view(-1, 3, 3)
        self.r = ry @ rx  # view = R @ local
        self.cu, self.cv, self.jaw = cu, cv, jaw

    def warp(self, v: torch.Tensor) -> torch.Tensor:
        """Horizontal squeeze factor of the lower face (the jaw), for image rows v."""
        below = ((v - _col(self.cv)) / _col(self.a[:, 1])).clamp(min=0.0)
        return (1.0 + _col(self.jaw) * below.square()).clamp(min=0.3)

    def anchor(self, xh, yh, lift=None):
        """Unit-sphere points x, y `[B, K]` (+ lift) → image u, v `[B, K]`, view normals `[B, K, 3]`."""
        zh = torch.sqrt((1.0 - xh.square() - yh.square()).clamp(min=0.0))
        if lift is not None:
            zh = zh + lift
        local = torch.stack([xh, yh, zh], -1) * self.a[:, None, :]
        view = local @ self.r.transpose(1, 2)
        normal = torch.stack([xh, yh, zh], -1) / self.a[:, None, :]
        normal = torch.nn.functional.normalize(normal @ self.r.transpose(1, 2), dim=-1)
        vv = self.cv[:, None] + view[..., 1]
        below = ((vv - self.cv[:, None]) / self.a[:, 1:2]).clamp(min=0.0)
        squeeze = (1.0 + self.jaw[:, None] * below.square()).clamp(min=0.3)
        uu = self.cu[:, None] + view[..., 0] / squeeze
        return uu, vv, normal

    def trace(self, u, v):
        """Per-pixel: radial coordinate ρ (< 1 inside), unit-sphere local point (x̂, ŷ, ẑ), view normal z/x."""
        du = (u - _col(self.cu)) * self.warp(v)
        dv = v - _col(self.cv)
        r, a = self.r, self.a
        o = [_col(r[:, 0, i]) * du + _col(r[:, 1, i]) * dv for i in range(3)]  # Rᵀ (du, dv, 0)
        d = [_col(r[:, 2, i]) for i in range(3)]  # Rᵀ e_z
        inv = [_col(1.0 / a[:, i].square()) for i in range(3)]
        qa = sum(d[i].square() * inv[i] for i in range(3))
        qb = sum(o[i] * d[i] * inv[i] for i in range(3))  # half of b
        qc = sum(o[i].square() * inv[i] for i in range(3))
        rho2 = qc - qb.square() / qa
        t = -qb / qa + torch.sqrt((1.0 - rho2).clamp(min=0.0) / qa)
        pts = [(o[i] + t * d[i]) / _col(a[:, i]) for i in range(3)]  # on the unit sphere
        nl = [pts[i] / _col(a[:, i]) for i in range(3)]
        nv = [sum(_col(r[:, j, i]) * nl[i] for i in range(3)) for j in range(3)]
        norm = torch.rsqrt(nv[0].square() + nv[1].square() + nv[2].square() + 1e-9)
        return rho2.clamp(min=0.0).sqrt(), pts, [n * norm for n in nv]


# ---------------------------------------------------------------------------------------------------------


MASK_NAMES = ("sclera", "iris", "pupil", "brow", "lips", "teeth", "glasses", "beard", "nose")


def render_with_masks(identity: torch.Tensor, nuisance: torch.Tensor, camera: torch.Tensor,
                      size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """`render` plus the coverage of each small feature, `[B, len(MASK_NAMES), size, size]` in [0, 1] (what
    the generator recipe's auxiliary mask head learns to predict: where the features are, whatever their
    colour contrast)."""
    idn, nui, cam = (t.detach().float().cpu() for t in (identity, nuisance, camera))
    grid = _grid(size)
    imgs, masks = [], []
    with torch.no_grad():
        for i in range(0, idn.shape[0], _CHUNK):
            found: dict[str, torch.Tensor] = {}
            imgs.append(_render_chunk(idn[i:i + _CHUNK], nui[i:i + _CHUNK], cam[i:i + _CHUNK], grid, size, found))
            zero = torch.zeros_like(imgs[-1][:, 0])
            masks.append(torch.stack([found.get(k, zero) for k in MASK_NAMES], 1))
    img = torch.cat(imgs).mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)
    return img.to(identity.device), torch.cat(masks).clamp_(0.0, 1.0).to(identity.device)


def _render_chunk(p: torch.Tensor, q: torch.Tensor, cam: torch.Tensor, grid, size: int,
                  masks: dict | None = None) -> torch.Tensor:
    b = p.shape[0]

    def keep(name: str, alpha: torch.Tensor) -> None:
        if masks is not None:
            masks[name] = alpha if name not in masks else torch.maximum(masks[name], alpha)

    u, v = grid
    w = 1.0 / (size * _ZOOM)  # soft-edge width: half a pixel
    pos = lambda x, m: x.clamp(min=m)  # noqa: E731 — sizes stay positive out of domain
    yaw, pitch = cam[:, 0], cam[:, 1]

    # --- parameters → geometry and colours (the ranges below are the in-domain design of the world) ---
    ax = pos(0.34 + 0.14 * p[:, 0], 0.2)
    ay = pos(0.48 + 0.14 * p[:, 1], 0.3)
    az = 0.55 * (ax + ay)
    jaw = 0.9 - 0.85 * p[:, 2]
    skin_l, skin_w = p[:, 3], p[:, 4]
    dark, light = torch.tensor([0.38, 0.24, 0.16]), torch.tensor([0.98, 0.86, 0.76])
    skin = _lerp(dark, light, skin_l[:, None])
    skin = skin + (skin_w[:, None] - 0.5) * torch.tensor([0.10, -0.02, -0.12])
    skin = skin.clamp(0.02, 1.0)
    hair = _hsv(
        0.01 + 0.11 * p[:, 5], (0.75 - 0.35 * p[:, 6]).clamp(0, 1), (0.12 + 0.78 * p[:, 6]).clamp(0, 1)
    )
    hair_len, fringe = p[:, 7], p[:, 8]
    eye_x = 0.25 + 0.17 * p[:, 9]
    eye_r = pos(0.06 + 0.04 * p[:, 10], 0.02) * ax / 0.41
    iris_col = _lerp(torch.tensor([0.34, 0.17, 0.04]), torch.tensor([0.18, 0.45, 0.92]), p[:, 11:12])
    iris_col = _lerp(
        iris_col, torch.tensor([0.35, 0.55, 0.25]), (1.0 - (2.0 * p[:, 11:12] - 1.0).abs()) * 0.6
    )
    iris_col = iris_col.clamp(0.0, 1.0)
    brow_t = pos(0.012 + 0.026 * p[:, 12], 0.004)
    brow_tilt = (p[:, 13] - 0.5) * 0.16
    nose_len = 0.1 + 0.3 * p[:, 14]
    nose_w = pos(0.05 + 0.06 * p[:, 15], 0.02)
    mouth_x = pos(0.13 + 0.27 * p[:, 16], 0.05)
    lip = pos(0.016 + 0.03 * p[:, 17], 0.005)
    ear = pos(0.06 + 0.07 * p[:, 18], 0.02)
    beard = ((p[:, 19] - 0.68) / 0.25).clamp(0.0, 1.5)
    glasses = ((p[:, 20] - 0.72) / 0.1).clamp(0.0, 1.0)
    smile = q[:, 0]
    openness = (0.5 + 0.6 * q[:, 1]).clamp(0.05, 1.3)
    light_a = (q[:, 2] - 0.5) * 2.4
    light_i = (0.5 + 0.7 * q[:, 3]).clamp(0.1, 2.0)
    bg = _hsv(q[:, 4], torch.full((b,), 0.35), (0.25 + 0.6 * q[:, 5]).clamp(0, 1))
    jit = q[:, 6] - 0.5

    head = _Head(ax, ay, az, yaw, pitch, torch.zeros(b), torch.full((b,), 0.02), jaw)
    light_dir = torch.stack([torch.sin(light_a), torch.full((b,), -0.35), torch.cos(light_a)], 1)
    light_dir = torch.nn.functional.normalize(light_dir, dim=1)

    def shade(nx, ny, nz, amb=0.5):
        lam = (nx * _col(light_dir[:, 0]) + ny * _col(light_dir[:, 1]) + nz * _col(light_dir[:, 2])).clamp(
            min=0
        )
        return amb + (1.0 - amb) * _col(light_i) * lam

    # --- background with a vertical gradient, then the clothes and neck ---
    img = bg[:, :, None, None] * (1.05 - 0.15 * (v.unsqueeze(1) + 1.0) / 2.0)
    img = img.expand(b, 3, size, size).contiguous()
    hu, hv = head.cu, head.cv
    shirt = (bg * 0.45 + torch.tensor([0.12, 0.12, 0.14])).clamp(0, 1)
    body = _ellipse(
        u, v, _col(hu + 0.25 * torch.sin(yaw)), _col(hv + ay + 0.62), _col(ax * 2.1), _col(ay * 0.8)
    )
    neck = _segment(
        u,
        v,
        _col(hu + 0.1 * torch.sin(yaw)),
        _col(hv + 0.3 * ay),
        _col(hu + 0.12 * torch.sin(yaw)),
        _col(hv + ay + 0.35),
        _col(ax * 0.5),
        _col(ax * 0.55),
    )

    # back hair: volume behind the head, longer hair falls to the shoulders
    bu, bv, _ = head.anchor(torch.zeros(b, 1), torch.full((b, 1), -0.15), torch.full((b, 1), -0.9))
    vol = 1.06 + 0.08 * p[:, 7].clamp(0, 1.5) + 0.04 * jit
    back = _ellipse(u, v, _col(bu[:, 0]), _col(bv[:, 0]), _col(ax * vol), _col(ay * vol))
    fall = _segment(
        u,
        v,
        _col(bu[:, 0]),
        _col(bv[:, 0]),
        _col(bu[:, 0]),
        _col(hv + ay * (0.1 + 1.1 * hair_len)),
        _col(ax * 1.02),
        _col(ax * (1.0 + 0.25 * hair_len)),
    )
    back_a = _soft(torch.minimum(back, torch.where(_col(hair_len) > 0.35, fall, back)), w)
    _blend(img, hair * 0.75, back_a)
    _blend(img, skin * 0.72, _soft(neck, w))
    _blend(img, shirt, _soft(body, w))

    # --- the head: traced ellipsoid, skin shading ---
    rho, (xh, yh, zh), (nx, ny, nz) = head.trace(u, v)
    head_a = _soft((rho - 1.0) * _col(0.5 * (ax + ay)), w)
    face = skin[:, :, None, None].expand(b, 3, size, size).contiguous()
    s_map = shade(nx, ny, nz)

    # beard on the lower face (full beard for large values, stubble in between)
    beard_line = 0.78 - 0.3 * _col(beard.clamp(max=1.0))
    beard_a = _soft(beard_line - yh, 0.04) * _soft(-zh + 0.0, 0.1) * _col(beard.clamp(max=1.0) * 0.9)
    _blend(face, hair * 0.8, beard_a)
    keep("beard", beard_a)

    # hair cap: above a hairline that drops towards the temples; the fringe lowers it in the middle
    h0 = -0.62 + 0.42 * _col(fringe) + 0.05 * _col(jit)
    hairline = h0 + 0.55 * xh.square().square() * (1.0 + 0.5 * _col(hair_len.clamp(0, 1)))
    cap = torch.maximum(_soft(yh - hairline, 0.035), _soft(zh + 0.25, 0.08) * _soft(yh - 0.35, 0.05))
    _blend(face, hair, cap)

    # eyes: sclera, iris, pupil, lid line; foreshortened and faded with their surface normal
    ex = torch.stack([-eye_x, eye_x], 1)
    ey = torch.full((b, 2), 0.02)
    eu, ev, en = head.anchor(ex, ey)
    vis = torch.sigmoid((en[..., 2] - 0.12) * 20.0)
    fx = torch.sqrt((1.0 - en[..., 0].square()).clamp(min=0.02))
    brow_col = hair * 0.85
    for k in (0, 1):
        cu_, cv_ = _col(eu[:, k]), _col(ev[:, k])
        ru, rv = _col(eye_r * fx[:, k]), _col(eye_r * 0.6 * openness)
        sclera = _soft(_ellipse(u, v, cu_, cv_, ru, rv), w)
        iris = _soft(_ellipse(u, v, cu_, cv_, _col(eye_r * 0.5 * fx[:, k]), _col(eye_r * 0.5)), w) * sclera
        pupil = _soft(_ellipse(u, v, cu_, cv_, _col(eye_r * 0.22 * fx[:, k]), _col(eye_r * 0.22)), w) * sclera
        lid = _soft((_ellipse(u, v, cu_, cv_ - rv * 0.1, ru * 1.05, rv * 1.05)).abs() - w * 1.2, w) * _soft(
            v - cv_, w
        )
        vk = _col(vis[:, k])
        _blend(face, torch.tensor([0.93, 0.92, 0.9]).expand(b, 3), sclera * vk)
        _blend(face, iris_col, iris * vk)
        _blend(face, torch.zeros(b, 3) + 0.04, pupil * vk)
        keep("sclera", sclera * vk)
        keep("iris", iris * vk)
        keep("pupil", pupil * vk)
        _blend(face, skin * 0.35, lid * vk)
        # brow above each eye; brow_tilt raises the outer (positive) or inner end
        side = 1.0 if k else -1.0
        bu_, bv_, _ = head.anchor(
            torch.stack([side * (eye_x - 0.16), side * (eye_x + 0.17)], 1),
            torch.stack([-0.17 + brow_tilt, -0.18 - brow_tilt], 1),
        )
        brow = _segment(
            u,
            v,
            _col(bu_[:, 0]),
            _col(bv_[:, 0]),
            _col(bu_[:, 1]),
            _col(bv_[:, 1]),
            _col(brow_t),
            _col(brow_t * 0.6),
        )
        _blend(face, brow_col, _soft(brow, w) * vk)
        keep("brow", _soft(brow, w) * vk)

    # nose: a ridge from the bridge to the protruding tip; the side away from the light is shaded, the tip
    # catches a highlight, nostrils and a soft shadow sit below it
    nu_, nv_, _ = head.anchor(
        torch.zeros(b, 2),
        torch.stack([torch.full((b,), 0.02), 0.2 + 0.5 * nose_len], 1),
        torch.stack([torch.zeros(b), 0.06 + 0.45 * nose_len], 1),
    )
    bu0, bv0, tu, tv = _col(nu_[:, 0]), _col(nv_[:, 0]), _col(nu_[:, 1]), _col(nv_[:, 1])
    nw = _col(nose_w)
    ridge = _segment(u, v, bu0, bv0, tu, tv, nw * 0.3, nw)
    along = ((v - bv0) / (tv - bv0 + 1e-4)).clamp(0.0, 1.0)
    centre = bu0 + (tu - bu0) * along
    away = _col(-torch.sign(light_dir[:, 0] + 1e-3))
    shadow_side = _soft(-(u - centre) * away, 0.3 * nw)  # 1 on the side facing away from the light
    nose_a = _soft(ridge, w)
    _blend(face, skin * 0.62, nose_a * shadow_side * 0.75)
    keep("nose", nose_a)
    tip = _ellipse(u, v, tu - away * nw * 0.25, tv - nw * 0.1, nw * 0.45, nw * 0.35)
    _blend(face, (skin * 1.12).clamp(0, 1), _soft(tip, 2 * w) * 0.6)
    under = _ellipse(u, v, tu, tv + nw * 0.55, nw * 1.1, nw * 0.3)
    _blend(face, skin * 0.55, _soft(under, 2 * w) * 0.5)
    for side in (-1.0, 1.0):
        nost = _ellipse(
            u, v, tu + side * nw * 0.6 * _col(torch.cos(yaw)), tv + nw * 0.3, nw * 0.32, nw * 0.18
        )
        _blend(face, skin * 0.25, _soft(nost, w) * 0.9)

    # mouth: corners and middle on the surface, curved by the smile, opened (teeth) for broad smiles
    mu, mv, mn = head.anchor(torch.stack([-mouth_x, torch.zeros(b), mouth_x], 1), torch.full((b, 3), 0.6))
    lu, ru_, cu2 = _col(mu[:, 0]), _col(mu[:, 2]), _col(mu[:, 1])
    span = (ru_ - lu).clamp(min=1e-3)
    t = ((u - lu) / span).clamp(-0.2, 1.2)
    s = torch.where(
        t < (cu2 - lu) / span,
        (t - (cu2 - lu) / span) / ((cu2 - lu) / span + 1e-4),
        (t - (cu2 - lu) / span) / (1.0 - (cu2 - lu) / span + 1e-4),
    )
    env = (1.0 - s.square()).clamp(min=0.0)
    curve = (
        _col(mv[:, 0])
        + (_col(mv[:, 2] - mv[:, 0])) * t.clamp(0, 1)
        + _col((smile - 0.35) * mouth_x * 0.35) * env
    )
    open_ = _col(((smile - 0.6) / 0.4).clamp(0, 1.2) * 0.05) * env.sqrt()
    dy = v - curve - open_ * 0.3
    lips = _soft((dy.abs() - _col(lip) * env.sqrt() - open_), w) * _soft(s.abs() - 1.0, 0.05)
    lip_col = (skin * torch.tensor([0.8, 0.45, 0.45]) + torch.tensor([0.22, 0.02, 0.04])).clamp(0, 1)
    _blend(face, lip_col, lips)
    keep("lips", lips)
    teeth = _soft(dy.abs() - open_, w) * _soft(s.abs() - 0.9, 0.05)
    _blend(face, torch.tensor([0.9, 0.88, 0.82]).expand(b, 3), teeth)
    keep("teeth", teeth)
    line = (
        _soft(dy.abs() - w * 0.6, w) * _soft(s.abs() - 1.0, 0.05) * _soft(open_ - 0.004, 0.003).mul(-1).add(1)
    )
    _blend(face, lip_col * 0.35, line)

    face.mul_(s_map.unsqueeze(1))
    _blend(img, face, head_a)
    if masks is not None:  # face features show only where the head does
        for name in list(masks):
            masks[name] = masks[name] * head_a

    # ears: on the sides, shown when their outward normal faces the camera
    eu2, ev2, en2 = head.anchor(
        torch.tensor([[-0.97, 0.97]]).expand(b, 2), torch.full((b, 2), 0.12), torch.full((b, 2), -0.1)
    )
    for k, side in ((0, -1.0), (1, 1.0)):
        nrm = torch.stack([torch.full((b,), side), torch.zeros(b), torch.full((b,), 0.35)], 1)
        nrm = torch.nn.functional.normalize(torch.einsum("bij,bj->bi", head.r, nrm), dim=1)
        e_vis = _col(torch.sigmoid(nrm[:, 2] * 14.0) * (1.0 - 0.8 * (hair_len > 0.8).float()))
        cu_ = _col(eu2[:, k] + side * ear * 0.25 * nrm[:, 0].abs())
        shape = _ellipse(u, v, cu_, _col(ev2[:, k]), _col(ear * (0.3 + 0.35 * nrm[:, 0].abs())), _col(ear))
        inner = _ellipse(u, v, cu_, _col(ev2[:, k]), _col(ear * 0.15 + 0.005), _col(ear * 0.55))
        e_shade = shade(*(_col(nrm[:, i]) for i in range(3)))
        _blend(img, skin[:, :, None, None] * e_shade.unsqueeze(1), _soft(shape, w) * e_vis)
        _blend(img, skin[:, :, None, None] * e_shade.unsqueeze(1) * 0.6, _soft(inner, w) * e_vis)

    # glasses: a ring around each eye, a bridge, and arms towards the ears
    if bool((glasses > 0).any()):
        g = torch.zeros(b, size, size)
        gu, gv, gn = head.anchor(ex * 1.02, ey, torch.full((b, 2), 0.12))
        for k in (0, 1):
            ring = _ellipse(
                u, v, _col(gu[:, k]), _col(gv[:, k]), _col(eye_r * 1.55 * fx[:, k]), _col(eye_r * 1.2)
            )
            g = torch.maximum(g, _soft(ring.abs() - 0.006, w) * _col(vis[:, k]))
            arm = _segment(
                u,
                v,
                _col(gu[:, k] + (k * 2 - 1) * eye_r * 1.55 * fx[:, k]),
                _col(gv[:, k]),
                _col(eu2[:, k]),
                _col(ev2[:, k] - 0.05),
                _col(torch.full((b,), 0.01)),
                _col(torch.full((b,), 0.01)),
            )
            g = torch.maximum(
                g, _soft(arm, w) * _col(torch.sigmoid(gn[:, k, 2] * 5) * (1 - vis[:, k]) ** 0.5)
            )
        bridge = _segment(
            u,
            v,
            _col(gu[:, 0] + eye_r * 1.55 * fx[:, 0]),
            _col(gv[:, 0]),
            _col(gu[:, 1] - eye_r * 1.55 * fx[:, 1]),
            _col(gv[:, 1]),
            _col(torch.full((b,), 0.01)),
            _col(torch.full((b,), 0.01)),
        )
        g = torch.maximum(g, _soft(bridge, w))
        _blend(img, torch.zeros(b, 3) + 0.08, g * _col(glasses))
        keep("glasses", g * _col(glasses))
    return img


# ---------------------------------------------------------------------------------------------------------
# Where the small features are: masks for measuring a generator's detail (eyes, mouth) against the renderer.


def feature_regions(identity: torch.Tensor, nuisance: torch.Tensor, camera: torch.Tensor,
                    size: int = 64) -> dict[str, torch.Tensor]:
    """Masks `[B, size, size]` (0/1 floats) of the eye region (both eyes with their brows and glasses rims)
    and the mouth region, from the same anchors the renderer draws them on. Eyes hidden by the yaw are left
    out. Same argument shapes as `render`."""
    p, q, cam = (t.detach().float().cpu() for t in (identity, nuisance, camera))
    b = p.shape[0]
    u, v = _grid(size)
    ax = (0.34 + 0.14 * p[:, 0]).clamp(min=0.2)
    ay = (0.48 + 0.14 * p[:, 1]).clamp(min=0.3)
    head = _Head(ax, ay, 0.55 * (ax + ay), cam[:, 0], cam[:, 1], torch.zeros(b), torch.full((b,), 0.02),
                 0.9 - 0.85 * p[:, 2])
    eye_x = 0.25 + 0.17 * p[:, 9]
    eye_r = (0.06 + 0.04 * p[:, 10]).clamp(min=0.02) * ax / 0.41
    eu, ev, en = head.anchor(torch.stack([-eye_x, eye_x], 1), torch.full((b, 2), 0.02))
    visible = en[..., 2] > 0.12
    eyes = torch.zeros(b, size, size, dtype=torch.bool)
    for k in (0, 1):
        # a box from above the brow (≈ 0.2 head units up) to below the glasses rim, ±1.7 eye radii across
        inside = ((u - _col(eu[:, k])).abs() <= _col(1.7 * eye_r + 0.02)) & \
                 (v >= _col(ev[:, k] - 0.3 * ay)) & (v <= _col(ev[:, k] + 1.4 * eye_r + 0.02))
        eyes |= inside & _col(visible[:, k])
    mouth_x = (0.13 + 0.27 * p[:, 16]).clamp(min=0.05)
    mu, mv, _ = head.anchor(torch.stack([-mouth_x, torch.zeros(b), mouth_x], 1), torch.full((b, 3), 0.6))
    lo, hi = torch.minimum(mu[:, 0], mu[:, 2]), torch.maximum(mu[:, 0], mu[:, 2])
    # the smile bends the middle of the mouth down by up to ≈ 0.09 and opens it by up to 0.06 more
    dv = v - _col(mv[:, 1])
    mouth = (u >= _col(lo - 0.03)) & (u <= _col(hi + 0.03)) & (dv >= -0.08) & (dv <= 0.17)
    del q
    return {"eyes": eyes.float(), "mouth": mouth.float()}
