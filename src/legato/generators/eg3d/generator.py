"""EG3D behind the `Generator` interface: cameras as 25-number vectors, tri-planes as features, adapters after
the backbone's synthesis blocks, projection of photos as the inverter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from legato.errors import InputError
from legato.generators.base import Generator
from legato.generators.eg3d.cameras import CameraRig
from legato.generators.eg3d.renderer import RenderingOptions
from legato.generators.eg3d.triplane import TriPlaneGenerator


@dataclass
class EG3DOptions:
    """Memory/time settings. None keeps the network's own value (the released 512² models: neural rendering
    at 128², 48 + 48 samples per ray)."""

    neural_rendering_resolution: int | None = None  # render at this size before super-resolution
    ray_chunk: int | None = None  # rays per renderer pass (bounds peak memory; results do not change)
    depth_resolution: int | None = None  # coarse samples per ray
    depth_resolution_importance: int | None = None  # importance samples per ray
    noise_mode: str = "const"  # backbone noise: const | random | none
    deterministic_rendering: bool = False  # fixed depth samples instead of the reference's random jitter
    gradient_checkpointing: bool = False  # training: recompute rendering and super-resolution in backward

    def validate(self) -> None:
        if self.noise_mode not in ("const", "random", "none"):
            raise InputError(f"noise_mode must be const, random or none, not {self.noise_mode!r}")
        for name in ("neural_rendering_resolution", "ray_chunk", "depth_resolution"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"EG3D option {name} must be ≥ 1, not {value}")


class EG3DGenerator(Generator):
    """A loaded EG3D network (`self.net`, a `TriPlaneGenerator`) seen as a `legato` generator.

    Cameras `c` are `[B, 25]` (cam2world 4×4 + normalised intrinsics 3×3). `mapping` is conditioned on the
    frontal camera when `c` is None (as the reference's samplers); `synthesis` renders from the front when
    `c` is None.
    """

    name = "eg3d"
    default_preset = "reference"  # a user bringing the released weights gets the papers' method

    def __init__(self, net: TriPlaneGenerator, options: EG3DOptions | None = None,
                 rig: CameraRig | None = None) -> None:
        super().__init__()
        self.net = net
        self.rig = rig or CameraRig.from_rendering_kwargs(net.rendering_kwargs)
        self.z_dim, self.w_dim, self.c_dim = net.z_dim, net.w_dim, 25
        self.num_ws = net.num_ws
        self.img_resolution = net.img_resolution
        self.configure(options or EG3DOptions())

    def configure(self, options: EG3DOptions) -> None:
        """Apply memory/time options (see `EG3DOptions`)."""
        options.validate()
        self.options = options
        self.net.renderer.ray_chunk = options.ray_chunk
        self.net.renderer.checkpoint = options.gradient_checkpointing
        self.net.checkpoint_superresolution = options.gradient_checkpointing
        overrides = {"deterministic": options.deterministic_rendering}
        if options.depth_resolution is not None:
            overrides["depth_resolution"] = options.depth_resolution
        if options.depth_resolution_importance is not None:
            overrides["depth_resolution_importance"] = options.depth_resolution_importance
        self.net.options = RenderingOptions.from_rendering_kwargs(self.net.rendering_kwargs, **overrides)

    @property
    def neural_rendering_resolution(self) -> int:
        return int(self.options.neural_rendering_resolution or self.net.neural_rendering_resolution)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.net.backbone.mapping.w_avg

    def _camera(self, c: torch.Tensor | None, n: int) -> torch.Tensor:
        if c is None:
            return self.rig.conditioning(n, device=self.w_avg.device)
        if c.dim() != 2 or c.shape[1] != 25:
            raise InputError(f"EG3D cameras are [B, 25] (cam2world 4×4 + intrinsics 3×3); got {tuple(c.shape)}")
        return c.to(self.w_avg.device).expand(n, -1) if c.shape[0] == 1 else c.to(self.w_avg.device)

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.net.mapping(z, self._camera(c, z.shape[0]), truncation_psi=truncation_psi)

    def render(self, ws: torch.Tensor, c: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Everything one render gives: `image`, `image_raw`, `image_depth`, `planes`."""
        return self.net.synthesis(ws, self._camera(c, ws.shape[0]), self.neural_rendering_resolution,
                                  noise_mode=self.options.noise_mode, generator=generator)

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.render(ws, c)["image"]

    def features(self, ws: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The tri-planes `[B, 3, 32, H, W]` (they do not depend on the camera)."""
        return self.net.triplanes(ws, noise_mode=self.options.noise_mode)

    def synthesis_with_features(self, ws: torch.Tensor, c: torch.Tensor | None = None):
        """(images, tri-planes) from one pass of the backbone."""
        out = self.render(ws, c)
        return out["image"], out["planes"]

    def adapter_sites(self) -> list[str]:
        synthesis = self.net.backbone.synthesis
        return [f"net.backbone.synthesis.b{res}.conv1" for res in synthesis.block_resolutions if res > 4]

    def views(self, n: int) -> torch.Tensor:
        return self.rig.views(n, device=self.w_avg.device)

    def use_reference_protocol(self) -> list[str]:
        """The reference code's EG3D settings: random synthesis noise in every pass, and cameras around the
        pivot [0, 0, 0] (its scripts read `avg_cam_pivot`, a key EG3D does not write, and fall back there)."""
        from dataclasses import replace

        changes = []
        if self.options.noise_mode != "random":
            self.configure(replace(self.options, noise_mode="random"))
            changes.append("synthesis noise: random (the reference's default noise_mode)")
        if tuple(self.rig.pivot) != (0.0, 0.0, 0.0):
            changes.append(f"camera pivot: [0, 0, 0] instead of the model's {list(self.rig.pivot)} (the reference "
                           "reads the key avg_cam_pivot, which EG3D does not write)")
            self.rig = replace(self.rig, pivot=(0.0, 0.0, 0.0))
        return changes

    def view_at(self, u: float) -> torch.Tensor:
        """The pose at yaw (2u − 1)·π/12, pitch −0.2: the reference's continuous training camera."""
        import math

        return self.rig.camera((2.0 * float(u) - 1.0) * math.pi / 12, -0.2, device=self.w_avg.device)

    def synthesis_parameters(self) -> list[nn.Parameter]:
        """What GUIDE fine-tunes: the StyleGAN2 synthesis network of the backbone only (its `unlearn.py` trains
        the parameters named `backbone.synthesis.*`; mapping, tri-plane decoder and super-resolution stay
        frozen)."""
        return [p for name, p in self.named_parameters() if name.startswith("net.backbone.synthesis.")]

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"img_resolution={self.img_resolution}, neural_rendering_resolution={self.neural_rendering_resolution}")
