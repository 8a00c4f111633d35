"""Attach Neural-ODE adapters to the outputs of named modules of any frozen `nn.Module`.

Adapters live outside the model (forward hooks), so the model's `state_dict` keys never change and
`detach()` gives back exactly the original model. Several named sets can be stacked on one model (one per
forgotten identity) and switched on/off with their own strengths, like `set_adapters(names, weights)` in
diffusers.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from legato.errors import InputError
from legato.ode.adapter import ODEAdapter, trajectory_consistency
from legato.ode.fields import CONDITIONED_FIELDS
from legato.ode.strength_map import StrengthMap, mapped


@dataclass
class AdapterConfig:
    """Settings of every adapter in a set (defaults: the LEGATO reference code)."""

    hidden: int = 256
    field: str = "conv1x1"
    t_end: float = 1.6
    step_size: float = 0.4
    method: str = "euler"
    condition_dim: int | None = None  # the gated field: the latent's width (the generator's w_dim)
    gate_hidden: int | None = None  # the gated field: its gate's width (None: `hidden`)
    gate_keys: int = 0  # the keyed field: how many forgotten latents it remembers per site
    gate_space: str = "latent"  # the keyed field: where it measures distances (fields.GATE_SPACES)
    gate_rank: int = 0  # the keyed field in the identity/embedding space: the width of its map (set with it)
    gate_map_hidden: int = 0  # the keyed field in the embedding space: its predictor's width (set with it)
    gate_floor: float = 0.0  # the keyed field: openness below this is 0 (a compact gate; KeyedField)

    def to_dict(self) -> dict:
        return asdict(self)


# model -> {name: AdapterSet}; weak so a dropped model takes its sets with it.
_REGISTRY: weakref.WeakKeyDictionary[nn.Module, OrderedDict[str, AdapterSet]] = weakref.WeakKeyDictionary()


def checked_strength(value: float) -> float:
    """`value` as a float in [0, 1] (any dial's strength), or a one-line error."""
    value = float(value)
    if not 0.0 <= value <= 1.0 or value != value:
        raise InputError(f"strength must be in [0, 1], got {value}")
    return value


def _key(site: str) -> str:
    return site.replace(".", "__")


def _infer_channels(module: nn.Module, site: str) -> int:
    for attr in ("out_channels", "out_features", "num_channels"):
        if isinstance(getattr(module, attr, None), int):
            return int(getattr(module, attr))
    raise InputError(
        f"cannot tell how many channels module {site!r} ({type(module).__name__}) outputs; "
        "pass channels={site: C} to attach()"
    )


class AdapterSet(nn.Module):
    """The adapters of one named set, one per site. Train `parameters()`; the base stays frozen."""

    def __init__(
        self, model: nn.Module, sites: dict[str, int], config: AdapterConfig, name: str = "default"
    ) -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.sites = list(sites)
        self.adapters = nn.ModuleDict(
            {_key(s): ODEAdapter(c, hidden=config.hidden, field=config.field, t_end=config.t_end,
                                 step_size=config.step_size, method=config.method,
                                 condition_dim=config.condition_dim, gate_hidden=config.gate_hidden,
                                 gate_keys=config.gate_keys, gate_space=config.gate_space,
                                 gate_rank=config.gate_rank, gate_floor=config.gate_floor,
                                 gate_map_hidden=config.gate_map_hidden)
             for s, c in sites.items()}
        )
        self._model_ref = weakref.ref(model)
        self._handles: list = []
        self._enabled = True
        self._strength = 1.0
        self._strength_map: StrengthMap | None = None  # the user's strength → the time span (calibrated runs)
        self.metadata: dict = {}

    # -- the model this set sits on -------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        model = self._model_ref()
        if model is None:
            raise InputError("the model this adapter set was attached to no longer exists")
        return model

    def _hook(self, site: str):
        adapter = self.adapters[_key(site)]

        def hook(module, inputs, kwargs, output):
            if not self._enabled or adapter.strength <= 0:
                return output
            condition = _site_latent(inputs, kwargs) if adapter.conditioned else None
            if isinstance(output, tuple | list):  # adapt the first output (the feature map)
                return type(output)([adapter(output[0], condition), *output[1:]])
            return adapter(output, condition)

        return hook

    def _install(self) -> None:
        modules = dict(self.model.named_modules())
        for site in self.sites:
            self._handles.append(modules[site].register_forward_hook(self._hook(site), with_kwargs=True))

    # -- control ---------------------------------------------------------------------------------
    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = checked_strength(value)
        self._strength = value
        for adapter in self.adapters.values():
            adapter.strength = mapped(self._strength_map, value)

    @property
    def strength_map(self) -> StrengthMap | None:
        """What `strength` turns the adapters' time span to (None: the strength itself); see
        `legato.ode.strength_map`. Setting it re-applies the current strength."""
        return self._strength_map

    @strength_map.setter
    def strength_map(self, value: StrengthMap | None) -> None:
        self._strength_map = value
        self.strength = self._strength

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)

    def __iter__(self) -> Iterator[ODEAdapter]:
        return iter(self.adapters.values())

    def adapter(self, site: str) -> ODEAdapter:
        return self.adapters[_key(site)]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def trajectory_consistency(self, mode: str = "all", site_index: int = -2, row: int | None = 0) -> torch.Tensor:
        """See `legato.ode.adapter.trajectory_consistency`."""
        return trajectory_consistency(list(self.adapters.values()), mode=mode, site_index=site_index, row=row)

    def gate_conditions(self) -> dict[str, torch.Tensor]:
        """The conditions the gated field saw at each site since the last call (cleared), `{site: [batch,
        dim]}`; empty when the field has no gate."""
        recorded = {site: self.adapter(site).consume_conditions() for site in self.sites}
        return {site: torch.cat(c) for site, c in recorded.items() if c}

    def site_conditions(self, run) -> dict[str, torch.Tensor]:
        """The latent each site is given while `run()` calls the model, `{site: [batch, dim]}`, read by
        temporary hooks on the site modules (no gradients; the adapters' own records are not touched)."""
        seen: dict[str, list[torch.Tensor]] = {site: [] for site in self.sites}

        def keep(found: list):
            def hook(module, inputs, kwargs, output):
                latent = _site_latent(inputs, kwargs)
                if isinstance(latent, torch.Tensor):
                    found.append(latent.detach())
            return hook

        modules = dict(self.model.named_modules())
        handles = [modules[site].register_forward_hook(keep(seen[site]), with_kwargs=True) for site in self.sites]
        try:
            with torch.no_grad():
                run()
        finally:
            for h in handles:
                h.remove()
        return {site: torch.cat(found) for site, found in seen.items() if found}

    def set_gate_keys(self, conditions: dict[str, torch.Tensor]) -> None:
        """The keyed field: remember these latents `{site: [N, dim]}` as the forgotten ones (replacing any)."""
        if self.config.field != "keyed":
            raise InputError(f"set_gate_keys needs the keyed field (this set's is {self.config.field!r})")
        missing = [s for s in self.sites if s not in conditions]
        if missing:
            raise InputError(f"no latents given for the keyed sites {missing}")
        counts = {conditions[s].shape[0] for s in self.sites}
        if len(counts) != 1:
            raise InputError(f"every site needs the same number of keys (got {sorted(counts)})")
        for site in self.sites:
            self.adapter(site).field.set_keys(conditions[site])
        self.config.gate_keys = counts.pop()

    def set_gate_projection(self, projection: torch.Tensor) -> None:
        """The keyed field in the identity space: the map `[D, rank]` from standardised latents under which
        its gates measure distance (`unlearning.gate_space.identity_projection`), the same at every site."""
        if self.config.field != "keyed" or self.config.gate_space != "identity":
            raise InputError("set_gate_projection needs the keyed field with --gate-space identity (this set: "
                             f"field {self.config.field!r}, space {self.config.gate_space!r})")
        for site in self.sites:
            self.adapter(site).field.set_projection(projection)
        self.config.gate_rank = int(projection.shape[1])

    def set_gate_embedding_map(self, tensors: dict[str, torch.Tensor]) -> None:
        """The keyed field in the embedding space: the predictor of identity embeddings from standardised
        latents (`unlearning.gate_space.embedding_map`; `fields.EMBEDDING_MAP`), the same at every site."""
        if self.config.field != "keyed" or self.config.gate_space != "embedding":
            raise InputError("set_gate_embedding_map needs the keyed field with --gate-space embedding (this set: "
                             f"field {self.config.field!r}, space {self.config.gate_space!r})")
        for site in self.sites:
            self.adapter(site).field.set_embedding_map(tensors)
        self.config.gate_rank = int(tensors["map_out"].shape[1])
        self.config.gate_map_hidden = int(tensors["map_in"].shape[1])

    def gate_standardisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The centre and scale the conditioned fields standardise their latent by (the same at every site)."""
        field = self.adapter(self.sites[0]).field
        return field.center.detach().clone(), field.scale.detach().clone()

    def detach(self) -> None:
        """Remove this set's hooks; when the last set goes, the base's `requires_grad` flags come back."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        model = self._model_ref()
        if model is None:
            return
        sets = _REGISTRY.get(model)
        if sets is not None and sets.get(self.name) is self:
            del sets[self.name]
            if not sets:
                flags = getattr(model, "_legato_requires_grad", None)
                if flags is not None:
                    for p, flag in zip(model.parameters(), flags, strict=True):
                        p.requires_grad_(flag)
                    del model._legato_requires_grad

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    # files: `legato.ode.bundle.save_bundle` / `load_bundle` (the bundle module builds on this one, not back)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sites={len(self.sites)}, strength={self.strength}, enabled={self.enabled}"


def _site_latent(inputs: tuple, kwargs: dict | None = None) -> torch.Tensor | None:
    """The per-sample vector a site was given: the first `[B, dim]` tensor after the feature map — the latent
    of StyleGAN2's, EG3D's and SynthFaces' modulated convs (layer(x, w, ...)), the embedding of a diffusers
    UNet block (block(x, emb), block(x, res_samples, emb), or `temb=` by keyword); None when there is none."""
    candidates = [*inputs[1:], *(kwargs or {}).values()]
    return next((c for c in candidates if isinstance(c, torch.Tensor) and c.dim() == 2), None)


def attach(
    model: nn.Module,
    sites: Sequence[str],
    name: str = "default",
    channels: dict[str, int] | None = None,
    **adapter_config,
) -> AdapterSet:
    """Put an `ODEAdapter` on the output of each named module of `model` and freeze the model.

    `sites` are names from `model.named_modules()`. Channels are read from the module
    (`out_channels`/`out_features`) unless given in `channels`. Keyword arguments go to `AdapterConfig`.
    """
    if not sites:
        raise InputError("attach() needs at least one site (a module name from model.named_modules())")
    config = AdapterConfig(**adapter_config)
    if config.field in CONDITIONED_FIELDS and config.condition_dim is None:  # the latent's width
        config.condition_dim = getattr(model, "w_dim", None)
        if not isinstance(config.condition_dim, int):
            raise InputError(f"the {config.field} field reads the latent at each site; this model has no w_dim, "
                             "so pass condition_dim= to attach()")
    modules = dict(model.named_modules())
    unknown = [s for s in sites if s not in modules]
    if unknown:
        raise InputError(f"unknown adapter site(s) {unknown}; the model has no module by that name")
    sets = _REGISTRY.setdefault(model, OrderedDict())
    if name in sets:
        raise InputError(f"the model already has an adapter set named {name!r}; detach it or pick another name")
    channels = dict(channels or {})
    resolved = {s: channels[s] if s in channels else _infer_channels(modules[s], s) for s in sites}
    try:
        first = next(model.parameters())
        device, dtype = first.device, first.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    adapter_set = AdapterSet(model, resolved, config, name=name).to(device=device, dtype=dtype)
    if not hasattr(model, "_legato_requires_grad"):
        model._legato_requires_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    if config.field in CONDITIONED_FIELDS:
        _standardise_gates(model, adapter_set)
    adapter_set._install()
    sets[name] = adapter_set
    return adapter_set


@torch.no_grad()
def _standardise_gates(model: nn.Module, adapter_set: AdapterSet, n: int = 2048) -> None:
    """Centre and scale the gated field's input by the statistics of the model's latents (its `mapping` of
    `n` seeded z's), when it has a mapping; a loaded bundle overwrites them with its own."""
    mapping, z_dim = getattr(model, "mapping", None), getattr(model, "z_dim", None)
    if not callable(mapping) or not isinstance(z_dim, int):
        return
    first = next(iter(adapter_set)).field
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(0)).to(first.center.device)
    ws = mapping(z)
    w = ws[:, 0] if ws.dim() == 3 else ws
    if w.shape[-1] != first.condition_dim:
        return
    center, scale = w.mean(0), w.std(0).clamp_min(1e-6)
    for adapter in adapter_set:
        adapter.field.center.copy_(center)
        adapter.field.scale.copy_(scale)


def adapter_sets(model: nn.Module) -> OrderedDict[str, AdapterSet]:
    """The adapter sets attached to `model`, in the order they apply."""
    return OrderedDict(_REGISTRY.get(model, {}))


def set_adapters(model: nn.Module, names: Sequence[str], strengths: Sequence[float] | float = 1.0) -> None:
    """Enable exactly the named sets, each at its strength; every other set on the model is switched off."""
    sets = _REGISTRY.get(model, {})
    missing = [n for n in names if n not in sets]
    if missing:
        raise InputError(f"no adapter set named {missing} on this model (have: {list(sets)})")
    if isinstance(strengths, int | float):
        strengths = [float(strengths)] * len(names)
    if len(strengths) != len(names):
        raise InputError(f"{len(names)} adapter names but {len(strengths)} strengths")
    for name, s in sets.items():
        s.enabled = name in names
    for name, value in zip(names, strengths, strict=True):
        sets[name].strength = value
