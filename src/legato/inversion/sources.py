"""Where the identity to forget comes from: a seed, a photo, a folder of photos, a saved latent, or a
person of the backend's own world.

Specs:
- `seed:N` — ws = mapping(z) for z drawn with seed N (the "Random" scenario);
- `PATH.png` — one photo, framed as the generator frames faces (`Generator.photo_framing`, by the
  caller's `load_photo`) and inverted
  with the backend's inverter (its encoder, else projection);
- `FOLDER/` — photos of one person: the one at `target_index` is forgotten, the others are held out;
- `latent:FILE` — a saved ws tensor (`.pt` read with weights_only, `.npy`, or `.safetensors` key `ws`);
- `person:N` / `ood-person:N` — a person of the backend's world (SynthFaces: held-out seed N, or an
  out-of-domain person): one photo forgotten, `n_held_out` others held out;
- `@FILE` — several people forgotten together: one spec of the kinds above per line (blank lines and lines
  starting with `#` are skipped; a folder's photos other than the first are held out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from legato.errors import CheckpointError, InputError
from legato.inversion.images import list_images, load_image


@dataclass
class IdentitySource:
    spec: str
    kind: str  # "seed" | "photo" | "folder" | "latent" | "person"
    ws: torch.Tensor  # [1, num_ws, w_dim]: the latent to forget
    description: str
    photo: torch.Tensor | None = None  # [1, 3, H, W]: the forgotten photo, when there is one
    held_out_photos: torch.Tensor | None = None  # [k, 3, H, W]
    held_out_ws: torch.Tensor | None = None  # [k, num_ws, w_dim]: the held-out photos, inverted
    # several people (`@FILE`): ws is [N, ...], one row per member; held_out_ws row i belongs to member
    # held_out_owner[i]
    members: list[IdentitySource] | None = None
    held_out_owner: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return int(self.ws.shape[0])

    def to_json(self) -> dict:
        d = {
            "spec": self.spec,
            "kind": self.kind,
            "description": self.description,
            "held_out": 0 if self.held_out_ws is None else int(self.held_out_ws.shape[0]),
        }
        if self.members is not None:
            d["people"] = [m.spec for m in self.members]
        return d

    def subset(self, n: int) -> IdentitySource:
        """The first `n` people (a report's pictures and dial for a run that forgets many)."""
        if self.members is None or n >= self.count:
            return self
        return combine_identities(self.members[:n], f"{self.spec} (first {n})")


def combine_identities(members: list[IdentitySource], spec: str) -> IdentitySource:
    """Several resolved people as one source: their latents stacked, their held-out photos with owners."""
    if not members:
        raise InputError(f"{spec}: no identities to forget")
    held = [(i, m) for i, m in enumerate(members) if m.held_out_ws is not None]
    held_ws = torch.cat([m.held_out_ws for _, m in held]) if held else None
    owner = torch.cat([torch.full((m.held_out_ws.shape[0],), i) for i, m in held]) if held else None
    photos = None
    if held and all(m.held_out_photos is not None for _, m in held):
        photos = torch.cat([m.held_out_photos for _, m in held])
    return IdentitySource(spec, "many", torch.cat([m.ws for m in members]),
                          f"{len(members)} people ({members[0].description}, …)" if len(members) > 1
                          else members[0].description,
                          held_out_photos=photos, held_out_ws=held_ws, members=list(members), held_out_owner=owner)


def read_identity_list(path: str | Path) -> list[str]:
    """The identity specs in a list file (`@FILE`): one per line; blank lines and `#` comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"identity list {path} does not exist")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"identity list {path} is not a text file (one identity spec per line)") from e
    specs = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not specs:
        raise InputError(f"identity list {path} names no identity (one spec per line, e.g. person:1000003)")
    if any(s.startswith("@") for s in specs):
        raise InputError(f"identity list {path}: a list cannot name another list (@…)")
    return specs


def _invert(generator, photos: torch.Tensor, refine_steps: int, names: list[str] | None = None) -> torch.Tensor:
    inverter = generator.inverter()
    if inverter is None:
        raise InputError(
            f"generator {generator.name!r} has no inversion encoder; give the identity as seed:N or latent:FILE"
        )
    with torch.no_grad():
        ws = inverter(photos)
    if refine_steps > 0 and hasattr(inverter, "refine"):
        ws = inverter.refine(photos, ws, steps=refine_steps)
    if hasattr(inverter, "check_photos"):  # a backend that can tell a photo of its world from anything else
        inverter.check_photos(photos, ws, names)
    return ws.detach()


def _read_latent(path: Path, generator) -> torch.Tensor:
    if not path.is_file():
        raise InputError(f"latent file {path} does not exist")
    try:
        if path.suffix == ".npy":
            ws = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if "ws" not in tensors:
                raise InputError(f"{path} holds no tensor named 'ws' (has {sorted(tensors)})")
            ws = tensors["ws"].float()
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = obj.get("ws", obj.get("w"))
            if not isinstance(obj, torch.Tensor):
                raise InputError(f"{path} does not hold a tensor (or a dict with 'ws')")
            ws = obj.float()
    except InputError:
        raise
    except Exception as e:  # corrupt or foreign file
        raise CheckpointError(f"cannot read latent {path}: {e}") from e
    nw, wd = generator.num_ws, generator.w_dim
    if ws.dim() == 1 and ws.shape[0] == wd:
        ws = ws[None, None].repeat(1, nw, 1)
    elif ws.dim() == 2 and ws.shape == (1, wd):
        ws = ws[:, None].repeat(1, nw, 1)
    elif ws.dim() == 2 and ws.shape == (nw, wd):
        ws = ws[None]
    if ws.dim() != 3 or ws.shape[1:] != (nw, wd) or ws.shape[0] != 1:
        raise InputError(
            f"latent in {path} has shape {tuple(ws.shape)}; this generator needs [1, {nw}, {wd}] "
            f"(or [{nw}, {wd}] or [{wd}])"
        )
    if not torch.isfinite(ws).all():
        raise InputError(f"latent in {path} holds NaN or inf")
    return ws


def resolve_identity(
    spec: str,
    generator,
    target_index: int = 0,
    seed: int = 0,
    refine_steps: int = 0,
    n_held_out: int = 4,
    load_photo=None,
) -> IdentitySource:
    """Turn an identity spec (see the module docstring) into the latent to forget (+ held-out photos).

    `load_photo(path, size)` reads a photo (default `load_image`, centre-cropped); the callers give
    `identity.framing.photo_loader(generator)`, which frames it as the generator frames faces."""
    load_photo = load_photo or load_image
    device = generator.w_avg.device
    if spec.startswith("@"):
        members = []
        for line, member in enumerate(read_identity_list(spec[1:]), 1):
            try:
                members.append(resolve_identity(member, generator, target_index, seed, refine_steps, n_held_out,
                                                load_photo))
            except InputError as e:
                raise InputError(f"{spec[1:]}, entry {line} ({member}): {e}") from e
        return combine_identities(members, spec)
    if spec.startswith("seed:"):
        try:
            n = int(spec[5:])
        except ValueError as e:
            raise InputError(f"identity {spec!r}: expected seed:<integer>") from e
        z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(n)).to(device)
        with torch.no_grad():
            ws = generator.mapping(z)
        return IdentitySource(spec, "seed", ws, f"random latent, seed {n}")
    if spec.startswith("latent:"):
        ws = _read_latent(Path(spec[7:]), generator).to(device)
        return IdentitySource(spec, "latent", ws, f"saved latent {spec[7:]}")
    if spec.startswith(("person:", "ood-person:")):
        kind, _, num = spec.partition(":")
        if not hasattr(generator, "person_photos"):
            raise InputError(f"generator {generator.name!r} has no world of its own; use a photo, seed: or latent:")
        try:
            person = int(num)
        except ValueError as e:
            raise InputError(f"identity {spec!r}: expected {kind}:<integer>") from e
        photos = generator.person_photos(person, n_held_out + 1, seed=seed, out_of_domain=kind == "ood-person")
        return _from_photos(spec, "person", photos.to(device), 0, generator, refine_steps,
                            f"{'out-of-domain ' if kind == 'ood-person' else ''}world person {person}")
    path = Path(spec)
    if path.is_dir():
        files = list_images(path)
        if not 0 <= target_index < len(files):
            raise InputError(f"--target-index {target_index} is out of range: {path} has {len(files)} photos")
        size = generator.img_resolution
        photos = torch.cat([load_photo(f, size) for f in files]).to(device)
        return _from_photos(spec, "folder", photos, target_index, generator, refine_steps,
                            f"{files[target_index].name} from {path} ({len(files) - 1} held out)",
                            names=[str(f) for f in files])
    if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"} or path.exists():
        photo = load_photo(path, generator.img_resolution).to(device)
        return _from_photos(spec, "photo", photo, 0, generator, refine_steps, f"photo {path.name}",
                            names=[str(path)])
    raise InputError(
        f"identity {spec!r} is neither seed:N, latent:FILE, person:N, an image file nor a folder of images"
    )


def _from_photos(spec, kind, photos, index, generator, refine_steps, description, names=None) -> IdentitySource:
    ws_all = _invert(generator, photos, refine_steps, names)
    keep = [i for i in range(photos.shape[0]) if i != index]
    return IdentitySource(
        spec,
        kind,
        ws_all[index : index + 1],
        description,
        photo=photos[index : index + 1],
        held_out_photos=photos[keep] if keep else None,
        held_out_ws=ws_all[keep] if keep else None,
    )
