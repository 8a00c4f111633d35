"""Vector fields f(x) for the adapters' ODE dx/dt = f(x).

Both fields end in a zero-initialised layer, so a new adapter integrates f = 0 and is exactly the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FIELDS = ("conv1x1", "context", "gated", "keyed", "unet", "unet-emb")
# fields that read a per-sample vector at their site: the latent (StyleGAN-style sites) or the embedding a
# UNet block is given (`unet-emb`)
CONDITIONED_FIELDS = ("gated", "keyed", "unet-emb")
# where the keyed field measures a latent's distance to the forgotten ones: the standardised latent itself,
# its image under a linear map fitted to the identity model, or the identity embedding a small MLP predicts
# from it (`KeyedField`)
GATE_SPACES = ("latent", "identity", "embedding")
# the embedding space's predictor, a fixed (not trained) MLP ŵ → Linear → SiLU → Linear → SiLU → Linear → e
EMBEDDING_MAP = ("map_in", "map_in_bias", "map_mid", "map_mid_bias", "map_out", "map_out_bias")


class Conv1x1Field(nn.Module):
    """The reference field: 1×1 conv C→hidden, LeakyReLU(0.2), 1×1 conv hidden→C (last layer zero-init).

    Initialised as the LEGATO reference code does: the first conv `kaiming_uniform_(a=0)` (bound √(6/C))
    with a zero bias, the last conv and its bias zero. Parameters: 2·C·hidden + hidden + C.
    """

    def __init__(self, channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.inp = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Conv2d(hidden, channels, kernel_size=1)
        nn.init.kaiming_uniform_(self.inp.weight, a=0)
        nn.init.zeros_(self.inp.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.inp(x)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"


class ContextField(Conv1x1Field):
    """The 1×1 field with a view of the whole image: the hidden layer also receives a linear map of the
    state's spatial mean, inp(x) + ctx(mean_hw(x)), before the LeakyReLU.

    A 1×1 field sees one pixel's features; to send many people to many different targets it must tell them
    apart from that pixel alone. Identity is a property of the whole face, so the spatial mean carries it to
    every pixel (docs/results/many-history.md measures the difference). `ctx` starts at zero, so a new
    context field equals the 1×1 field it extends. Parameters: 3·C·hidden + hidden + C.
    """

    def __init__(self, channels: int, hidden: int = 256) -> None:
        super().__init__(channels, hidden)
        self.ctx = nn.Linear(channels, hidden, bias=False)
        nn.init.zeros_(self.ctx.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.ctx(x.mean(dim=(2, 3)))[:, :, None, None]
        return self.out(self.act(self.inp(x) + context))


class _SwitchedField(Conv1x1Field):
    """The 1×1 field times a per-sample gate read from the site's latent (`condition`, `[B, condition_dim]`),
    standardised by `center`/`scale` (W is a narrow, off-centre cloud: per-coordinate spread ≈ 0.24 around a
    mean of norm 2.6 on SynthFaces, and a gate on raw latents learns several times slower; `attach` sets
    them from the generator's mapping, a bundle carries them). Subclasses define `openness`."""

    conditioned = True

    def __init__(self, channels: int, hidden: int, condition_dim: int | None, name: str) -> None:
        super().__init__(channels, hidden)
        if not condition_dim or condition_dim < 1:
            from legato.errors import InputError

            raise InputError(f"the {name} field needs the latent's width (condition_dim, the generator's w_dim)")
        self.condition_dim = condition_dim
        self.register_buffer("center", torch.zeros(condition_dim))
        self.register_buffer("scale", torch.ones(condition_dim))

    def standardised(self, condition: torch.Tensor) -> torch.Tensor:
        return (condition - self.center) / self.scale

    def openness(self, condition: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def switched(self, x: torch.Tensor, openness: torch.Tensor) -> torch.Tensor:
        """The field at `x` scaled by a gate already computed (`openness`, `[B]`)."""
        return openness.view(-1, 1, 1, 1).to(x.dtype) * super().forward(x)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.switched(x, self.openness(condition))


class GatedField(_SwitchedField):
    """The 1×1 field switched per sample by the site's latent: σ(gate(w))·f(x), gate a small MLP on w
    (Linear w_dim→hidden, LeakyReLU(0.2), Linear hidden→1).

    A field on features alone changes every face that resembles the forgotten ones; forgetting many people
    then trades directly against preservation (docs/reference/many-people.md). In W the people are far
    apart, so the gate can learn to open for the forgotten people and close for everyone else (the membership term,
    `unlearning.methods.gates`). It needs a site whose second input is the latent `[B, w_dim]` (the modulated
    convs of StyleGAN2, EG3D and SynthFaces). The gate starts half open (σ(0)); the field's last layer is zero, so a
    new gated adapter is still the identity. Parameters: 2·C·hidden + hidden + C + w_dim·hidden + 2·hidden + 1.
    """

    def __init__(self, channels: int, hidden: int = 256, condition_dim: int | None = None,
                 gate_hidden: int | None = None) -> None:
        super().__init__(channels, hidden, condition_dim, "gated")
        self.gate_hidden = gate_hidden or hidden  # the gate's width (default: the field's)
        self.gate = nn.Sequential(nn.Linear(condition_dim, self.gate_hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(self.gate_hidden, 1))
        nn.init.zeros_(self.gate[2].weight)
        nn.init.zeros_(self.gate[2].bias)

    def openness(self, condition: torch.Tensor) -> torch.Tensor:
        """The gate per sample, `[B]` in (0, 1)."""
        return torch.sigmoid(self.gate(self.standardised(condition))).squeeze(1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, condition_dim={self.condition_dim}, gate_hidden={self.gate_hidden}"


class KeyedField(_SwitchedField):
    """The 1×1 field switched per sample by how close the site's latent is to a forgotten one:
    g(w)·f(x) with g(w) = exp(−min_i ‖ŵ − k_i‖² / (D·r²)).

    `keys` `[N, D]` are the forgotten latents at this site, standardised like the gated field's input (ŵ =
    (w − center) / scale), set before training (`AdapterSet.set_gate_keys`) and stored in the bundle. The
    gate is 1 at each forgotten latent and falls off with the distance to the nearest one, in units of the
    radius r (a trained scalar, r² = exp(log_radius2), starting at 0.5: a random person, at a mean squared
    distance per coordinate of about 2, sees e⁻⁴ ≈ 0.02). The gated field's MLP has to learn which of
    hundreds of points to open for from a few positives a step, and at 200 people it tells them from random
    people only at 0.62 against 0.26 (docs/results/many-history.md); a gate that remembers the points need
    not learn them.
    It has no key until set (gate 0: the identity). The bundle then holds the forgotten people's latents,
    as its metadata already names them. Parameters: those of the 1×1 field + 1.

    `space="identity"` measures the distance after a fixed linear map `projection` `[D, rank]` of ŵ, fitted so
    that distances follow the identity model's embedding (`unlearning.gate_space`): the latent also holds
    expression, light and background, which a person's other photos change, so in ŵ itself those photos
    can sit as far from the forgotten one as strangers do. The map is scaled so that a random pair is as far
    apart per coordinate as in ŵ, so the radius means the same in both spaces. Until it is set the gate is 0.

    `space="embedding"` measures the distance between identity embeddings predicted from ŵ by a small fixed
    MLP (`rank` outputs, `map_hidden` wide; `unlearning.gate_space.embedding_map`), each scaled to unit length:
    a linear map of ŵ predicts the embedding at cosine 0.78 on SynthFaces, the MLP at 0.97, and a person's
    other photos then stand apart from strangers where the linear map mixed them
    (docs/results/unlearning-history.md). For unit vectors ‖u − v‖² = 2(1 − cos), and a random pair
    (cosine ≈ 0) is at 2, as per coordinate in ŵ, so the squared distance is not divided by the width and
    the radius keeps its meaning. Parameters: the 1×1 field's + 1 (the MLP's buffers are fitted before
    training and stored in the bundle, not trained).

    `floor` ε > 0 makes the gate compact: (g − ε)/(1 − ε), and 0 below ε. The Gaussian never quite closes,
    so every stranger gets a little of the field (openness ≈ 0.01–0.04 on SynthFaces, up to 0.19), which
    shifts the whole distribution a little (ΔFID_real); below the floor a face is exactly the source's.
    """

    def __init__(self, channels: int, hidden: int = 256, condition_dim: int | None = None, keys: int = 0,
                 space: str = "latent", rank: int = 0, floor: float = 0.0, map_hidden: int = 0) -> None:
        super().__init__(channels, hidden, condition_dim, "keyed")
        if not 0.0 <= floor < 1.0:
            from legato.errors import InputError

            raise InputError(f"the keyed gate's floor must be in [0, 1) (got {floor})")
        self.floor = float(floor)
        if space not in GATE_SPACES:
            from legato.errors import InputError

            raise InputError(f"unknown gate space {space!r}; choose one of {', '.join(GATE_SPACES)}")
        self.space = space
        self.register_buffer("keys", torch.zeros(int(keys), condition_dim))
        if space == "identity":
            self.register_buffer("projection", torch.zeros(condition_dim, int(rank)))
        if space == "embedding":
            for name, shape in _embedding_map_shapes(condition_dim, int(map_hidden), int(rank)).items():
                self.register_buffer(name, torch.zeros(shape))
        self.log_radius2 = nn.Parameter(torch.tensor(math.log(0.5)))

    def set_projection(self, projection: torch.Tensor) -> None:
        """The identity space's map `[D, rank]` from standardised latents (space "identity" only)."""
        if self.space != "identity":
            from legato.errors import InputError

            raise InputError("set_projection needs a keyed field with gate space 'identity'")
        self.projection = projection.detach().to(self.center).clone()  # each site its own (safetensors)

    def set_embedding_map(self, tensors: dict[str, torch.Tensor]) -> None:
        """The embedding space's predictor (`EMBEDDING_MAP`: weights `[in, out]` and biases), space
        "embedding" only; the shapes must chain from the latent's width."""
        from legato.errors import InputError

        if self.space != "embedding":
            raise InputError("set_embedding_map needs a keyed field with gate space 'embedding'")
        missing = [name for name in EMBEDDING_MAP if name not in tensors]
        if missing:
            raise InputError(f"the embedding map lacks {missing}")
        hidden, width = tensors["map_in"].shape[1], tensors["map_out"].shape[1]
        expected = _embedding_map_shapes(self.condition_dim, hidden, width)
        wrong = [name for name in EMBEDDING_MAP if tuple(tensors[name].shape) != expected[name]]
        if wrong:
            raise InputError(f"the embedding map's {wrong} do not chain from a latent of width {self.condition_dim}")
        for name in EMBEDDING_MAP:
            setattr(self, name, tensors[name].detach().to(self.center).clone())  # each site its own (safetensors)

    @property
    def awaits_map(self) -> bool:
        """In the identity or embedding space, before its map is set (the gate stays shut until then)."""
        if self.space == "identity":
            return not bool(self.projection.any())
        return self.space == "embedding" and not bool(self.map_out.any())

    def predicted_embedding(self, standard: torch.Tensor) -> torch.Tensor:
        """The embedding space: the unit identity embedding the map predicts from standardised latents."""
        return F.normalize(embedding_map_forward({name: getattr(self, name) for name in EMBEDDING_MAP}, standard),
                           dim=1)

    def _measured(self, standard: torch.Tensor) -> torch.Tensor:
        if self.space == "embedding":
            return self.predicted_embedding(standard)
        return standard if self.space == "latent" else standard @ self.projection.to(standard)

    def set_keys(self, conditions: torch.Tensor) -> None:
        """Remember `conditions` `[N, D]` (raw latents at this site) as the forgotten ones."""
        self.keys = self.standardised(conditions.detach()).to(self.center)

    def openness(self, condition: torch.Tensor) -> torch.Tensor:
        if self.keys.shape[0] == 0:
            return condition.new_zeros(condition.shape[0])
        if self.awaits_map:
            return condition.new_zeros(condition.shape[0])
        standard = self._measured(self.standardised(condition))
        keys = self._measured(self.keys.to(standard))
        # per coordinate in ŵ and its linear image; unit embeddings are already on that scale (class docstring)
        per = 1 if self.space == "embedding" else standard.shape[1]
        nearest = torch.cdist(standard, keys).min(dim=1).values.pow(2) / per
        gate = torch.exp(-nearest / self.log_radius2.exp())
        return gate if self.floor == 0.0 else ((gate - self.floor) / (1.0 - self.floor)).clamp_min(0.0)

    def extra_repr(self) -> str:
        extra = f", space=identity, rank={self.projection.shape[1]}" if self.space == "identity" else ""
        if self.space == "embedding":
            extra = f", space=embedding, rank={self.map_out.shape[1]}, map_hidden={self.map_in.shape[1]}"
        extra += f", floor={self.floor}" if self.floor else ""
        return f"{super().extra_repr()}, condition_dim={self.condition_dim}, keys={self.keys.shape[0]}{extra}"


def embedding_map_forward(tensors: dict[str, torch.Tensor], standard: torch.Tensor) -> torch.Tensor:
    """The embedding space's MLP (`EMBEDDING_MAP`) at standardised latents `[B, D]`, before the unit scaling:
    the one forward pass its fit (`unlearning.gate_space.embedding_map`) and the gate both run."""
    t = {name: tensors[name].to(standard) for name in EMBEDDING_MAP}
    h = F.silu(standard @ t["map_in"] + t["map_in_bias"])
    h = F.silu(h @ t["map_mid"] + t["map_mid_bias"])
    return h @ t["map_out"] + t["map_out_bias"]


def _embedding_map_shapes(dim: int, hidden: int, width: int) -> dict[str, tuple[int, ...]]:
    return {"map_in": (dim, hidden), "map_in_bias": (hidden,), "map_mid": (hidden, hidden),
            "map_mid_bias": (hidden,), "map_out": (hidden, width), "map_out_bias": (width,)}


def _groups(channels: int, wanted: int = 8) -> int:
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


class UNetField(nn.Module):
    """A field for UNet feature maps: GroupNorm, SiLU, 3×3 conv C→hidden, GroupNorm, SiLU, 3×3 conv hidden→C."""

    def __init__(self, channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(hidden), hidden)
        self.conv2 = nn.Conv2d(hidden, channels, kernel_size=3, padding=1)
        self.act = nn.SiLU()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        return self.conv2(self.act(self.norm2(h)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"


class EmbeddingUNetField(UNetField):
    """The UNet field that also reads the embedding its block is given (diffusers' `temb`: the timestep's
    plus the class's embedding, `[B, condition_dim]`), added to the hidden layer through SiLU and a linear
    map, as the UNet's own resnets add it: h = conv1(SiLU(norm1(x))) + cond(SiLU(emb)).

    A field on features alone must tell the forgotten name from the others by what the name did to the
    features; this one is told the name, so it can act on the forgotten class and leave the others as they
    were (docs/reference/lfw-faces.md measures the difference). The last conv is zero as in `UNetField`,
    so a new adapter is still the identity. Parameters: those of `UNetField` + condition_dim·hidden + hidden.
    """

    conditioned = True
    records_conditions = False  # no gate loss reads them back

    def __init__(self, channels: int, hidden: int = 256, condition_dim: int | None = None) -> None:
        super().__init__(channels, hidden)
        if not condition_dim or condition_dim < 1:
            from legato.errors import InputError

            raise InputError("the unet-emb field needs the width of the embedding its blocks are given "
                             "(condition_dim, e.g. the class embedding's width)")
        self.condition_dim = condition_dim
        self.cond = nn.Linear(condition_dim, hidden)

    def openness(self, condition: torch.Tensor) -> torch.Tensor:
        """What the embedding adds to the hidden layer, `[B, hidden]` (computed once per solve: the
        embedding is constant in the ODE's time)."""
        return self.cond(F.silu(condition))

    def switched(self, x: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x))) + added[:, :, None, None].to(x.dtype)
        return self.conv2(self.act(self.norm2(h)))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.switched(x, self.openness(condition))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, condition_dim={self.condition_dim}"


def make_field(name: str, channels: int, hidden: int, condition_dim: int | None = None,
               gate_hidden: int | None = None, gate_keys: int = 0, gate_space: str = "latent",
               gate_rank: int = 0, gate_floor: float = 0.0, gate_map_hidden: int = 0) -> nn.Module:
    from legato.errors import InputError

    if name == "conv1x1":
        return Conv1x1Field(channels, hidden)
    if name == "context":
        return ContextField(channels, hidden)
    if name == "gated":
        return GatedField(channels, hidden, condition_dim, gate_hidden)
    if name == "keyed":
        return KeyedField(channels, hidden, condition_dim, gate_keys, gate_space, gate_rank, gate_floor,
                          gate_map_hidden)
    if name == "unet":
        return UNetField(channels, hidden)
    if name == "unet-emb":
        return EmbeddingUNetField(channels, hidden, condition_dim)
    raise InputError(f"unknown adapter field {name!r}; choose one of {', '.join(FIELDS)}")
