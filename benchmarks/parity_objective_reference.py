"""The reference side of `parity_objective.py`: runs one iteration of LEGATO's or GUIDE's own `unlearn()`.

    python benchmarks/parity_objective_reference.py REPO WORK KIND   (KIND: legato | guide)

Started by `parity_objective.py` in a child process (the two repositories share module names), with
`WORK/settings.json`, `WORK/draws.pt`, `WORK/model_ir_se50.pth` and `WORK/lpips_vgg.pt` written by it.
The reference's `unlearn.py` runs unmodified; only what it reaches outside itself is replaced:

- `legacy.load_network_pkl` returns a random-weight TriPlaneGenerator of the FFHQ-512 config, built here
  with the reference's own class (saved as tensors and constructor arguments to `WORK/eg3d_KIND.pt`), with its noise
  strengths at 0 so that synthesis noise contributes nothing on either side;
- `np.random.uniform` and `torch.randn(1, 512)` return the draws of `draws.pt` (yaw, α's, z's), `torch.device`
  maps "cuda" to the CPU;
- `lpips.LPIPS`, `click`, `tqdm` are stand-ins (LPIPS: the shared random `parity_lpips` network);
- `optim.Adam` is a recorder: its `step()` keeps the trained parameters' gradients and changes nothing;
- every `synthesis` call first seeds the global RNG from (trained network or source, which latent), so the
  renderer's random depths are the same as on the other side, whatever order the calls come in.

It writes `WORK/reference_KIND.pt`: every loss term the code computed, the total, the gradients by name,
and the adapters' values it started from.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch


class _Stop(Exception):
    """Raised on the first render after the optimiser step: one iteration is all the check needs."""


def main() -> None:
    repo, work, kind = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), sys.argv[3]
    settings = json.loads((work / "settings.json").read_text())
    torch.set_num_threads(int(settings["threads"]))
    here = Path(__file__).resolve().parent
    stubs = work / "stubs"
    sys.path[:0] = [str(repo), str(stubs), str(here)]
    import parity_lpips

    shared_lpips = parity_lpips.load(work / "lpips_vgg.pt")
    sys.modules["lpips"] = types.SimpleNamespace(LPIPS=lambda net="alex", **kw: shared_lpips)
    sys.modules["click"] = types.SimpleNamespace(command=lambda *a, **k: (lambda f: f),
                                                 option=lambda *a, **k: (lambda f: f))
    postfix: dict = {}

    class Bar:
        def __init__(self, iterable):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, **kw):
            postfix.update(kw)

    sys.modules["tqdm"] = types.SimpleNamespace(tqdm=Bar)

    if not (repo / "training" / "networks_stylegan3.py").is_file():
        # the LEGATO repository lacks this module; its super-resolution file imports one class from it for a
        # variant the FFHQ-512 config does not use
        placeholder = types.ModuleType("training.networks_stylegan3")
        placeholder.SynthesisLayer = type("SynthesisLayer", (torch.nn.Module,), {})
        sys.modules["training.networks_stylegan3"] = placeholder

    import camera_utils as cu
    import dnnlib
    from training.triplane import TriPlaneGenerator

    # the FFHQ-512 network (ffhqrebalanced512-128.pkl's config), random weights, noise switched off
    cbase, cmax = (4096, 64) if settings["reduced"] else (32768, 512)
    rendering = dict(image_resolution=512, disparity_space_sampling=False, clamp_mode="softplus",
                     superresolution_module="training.superresolution.SuperresolutionHybrid8XDC",
                     c_gen_conditioning_zero=False, gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode="none",
                     density_reg=0.25, density_reg_p_dist=0.004, reg_type="l1", decoder_lr_mul=1.0, sr_antialias=True,
                     depth_resolution=settings["depth_samples"], depth_resolution_importance=settings["depth_samples"],
                     ray_start=2.25, ray_end=3.3, box_warp=1, avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])
    torch.manual_seed(0)
    net = TriPlaneGenerator(z_dim=512, w_dim=512, c_dim=25, img_resolution=512, img_channels=3,
                            mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=cbase, channel_max=cmax,
                            fused_modconv_default="inference_only", rendering_kwargs=rendering, num_fp16_res=0,
                            sr_num_fp16_res=4, conv_clamp=None,
                            sr_kwargs=dnnlib.EasyDict(channel_base=cbase, channel_max=cmax,
                                                      fused_modconv_default="inference_only"))
    net = net.eval().requires_grad_(False)
    net.neural_rendering_resolution = int(settings["neural_rendering_resolution"])
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in list(net.named_parameters()) + list(net.named_buffers()):
            if "noise_strength" in name:
                p.zero_()
            elif name.endswith(("bias", "w_avg")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    # the network for the other side as plain tensors and constructor arguments (LEGATO's copy of the EG3D
    # classes carries an unused `unlearn` layer per block, which is not part of the released format)
    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value

    torch.save({"tensors": {k: v for k, v in net.state_dict().items() if ".unlearn." not in k},
                "init_kwargs": json.dumps(plain(dict(net.init_kwargs))),
                "neural_rendering_resolution": net.neural_rendering_resolution}, work / f"eg3d_{kind}.pt")

    draws = torch.load(work / "draws.pt", weights_only=True)
    num_ws = net.backbone.num_ws
    pivot, fov = torch.tensor([0.0, 0.0, 0.0]), cu.FOV_to_intrinsics(18.837)
    cond = torch.cat([cu.LookAtPoseSampler.sample(math.pi / 2, math.pi / 2, pivot, radius=2.7).reshape(-1, 16),
                      fov.reshape(-1, 9)], 1)
    with torch.no_grad():
        w_u = net.mapping(draws["z_u"], cond)
        w_avg = net.backbone.mapping.w_avg[None].repeat(num_ws, 1)
        z_r = torch.cat([draws["z_adjacent"], draws["z_global"]])
        w_r = net.mapping(z_r, cond.expand(z_r.shape[0], -1))
    run = work / f"run_{kind}"
    run.mkdir(exist_ok=True)
    torch.save(w_u, run / "w_u.pt")
    torch.save(w_avg, run / "w_avg_ffhqrebalanced512-128.pt")
    (run / "model_ir_se50.pth").write_bytes((work / "model_ir_se50.pth").read_bytes())
    # the latents the code will render (nearest-neighbour keys for the render seeds; approximate is enough)
    w_id = w_u - w_avg[None]
    w_t = w_avg[None] - w_id / w_id.norm(p=2) * 30.0
    n_adj = draws["z_adjacent"].shape[0]
    dirs = (w_r[:n_adj] - w_u) / (w_r[:n_adj] - w_u).flatten(1).norm(dim=1).view(-1, 1, 1)
    delta = draws["alphas"].view(-1, 1, 1) * dirs
    keys_trained = torch.cat([w_u, w_u + delta, w_r[n_adj:]])
    keys_source = torch.cat([w_t, w_t + delta, w_r[n_adj:]])

    sys.path.insert(0, str(repo))
    import unlearn as U

    uniform_queue = [float(draws["yaw"])] + [float(a) for a in draws["alphas"]]
    randn_queue = list(torch.cat([draws["z_adjacent"], draws["z_global"]]).split(1))

    class RandomProxy:
        def __getattr__(self, name):
            return getattr(np.random, name)

        @staticmethod
        def uniform(low=0.0, high=1.0, size=None):
            value = uniform_queue.pop(0)
            assert low <= value <= high, (low, value, high)
            return value if size is None else np.full(size, value)

    class NumpyProxy:
        random = RandomProxy()

        def __getattr__(self, name):
            return getattr(np, name)

    class TorchProxy:
        @staticmethod
        def device(*args, **kwargs):
            return torch.device("cpu")

        @staticmethod
        def randn(*shape, **kwargs):
            if tuple(shape) == (1, 512) and randn_queue:
                return randn_queue.pop(0).clone()
            return torch.randn(*shape, **{k: v for k, v in kwargs.items() if k != "device"})

        def __getattr__(self, name):
            return getattr(torch, name)

    mse_calls: list[float] = []

    lpips_calls: list[float] = []
    id_calls: list[float] = []
    original_lpips_forward = type(shared_lpips).forward

    def recording_lpips(self, a, b):
        value = original_lpips_forward(self, a, b)
        lpips_calls.append(value.mean().item())
        return value

    type(shared_lpips).forward = recording_lpips
    original_id_forward = U.IDLoss.forward

    def recording_id(self, y_hat, y):
        value = original_id_forward(self, y_hat, y)
        id_calls.append(float(value.detach()) if torch.is_tensor(value) else float(value))
        return value

    U.IDLoss.forward = recording_id

    state: dict = {"trained": None, "stepped": False, "total": None, "adapters": {}, "grads": {}}
    trained_class = U.UnTriPlaneGenerator if kind == "legato" else U.TriPlaneGenerator
    original_init = trained_class.__init__

    def capturing_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        state["trained"] = self

    trained_class.__init__ = capturing_init

    class Recorder:
        """Stands in for Adam: sets the adapters' starting values (LEGATO) and records the gradients."""

        def __init__(self, params, lr):
            self.params = list(params)
            model = state["trained"]
            if kind == "legato":  # random, non-zero fields (the zero-initialised last conv gives no gradient)
                gen = torch.Generator().manual_seed(7)
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        if ".ode_block." in name:
                            scale = 0.05 if ".unlearn.2." in name else 0.0
                            if scale:
                                p.copy_(torch.randn(p.shape, generator=gen) * scale)
                            state["adapters"][name] = p.detach().clone()

        def zero_grad(self, *a, **k):
            for p in self.params:
                p.grad = None
            original_backward = torch.Tensor.backward

            def recording_backward(tensor, *args, **kwargs):
                torch.Tensor.backward = original_backward
                state["total"] = tensor.item()
                return original_backward(tensor, *args, **kwargs)

            torch.Tensor.backward = recording_backward

        def step(self):
            model = state["trained"]
            state["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                              if p.requires_grad and p.grad is not None}
            state["stepped"] = True

    seeds = {"trained": 0, "source": 0}
    for cls in {U.TriPlaneGenerator, trained_class}:
        original_synthesis = cls.synthesis

        def seeded_synthesis(self, ws, c, *args, _original=original_synthesis, **kwargs):
            if state["stepped"]:
                raise _Stop
            is_trained = self is state["trained"]
            keys = keys_trained if is_trained else keys_source
            row = int((keys - ws.detach()).flatten(1).norm(dim=1).argmin())
            torch.manual_seed(1000 + 10 * row + (0 if is_trained else 1))
            seeds["trained" if is_trained else "source"] += 1
            return _original(self, ws, c, *args, **kwargs)

        cls.synthesis = seeded_synthesis

    U.np, U.torch, U.F = NumpyProxy(), TorchProxy(), parity_lpips.RecordingFunctional(mse_calls)
    U.optim = types.SimpleNamespace(Adam=Recorder)
    U.legacy = types.SimpleNamespace(load_network_pkl=lambda f: {"G_ema": net})
    U.dnnlib = types.SimpleNamespace(util=types.SimpleNamespace(open_url=lambda *a, **k: contextlib.nullcontext()))
    U.tqdm = Bar

    kwargs = dict(pretrained_ckpt="random", iter=1, lr=1e-4, seed=None, fov_deg=18.837, truncation_psi=1.0,
                  truncation_cutoff=14, exp="parity", inversion=None, inversion_image_path="w_u.pt", angle_p=-0.2,
                  angle_y_abs=np.pi / 12, sample_views=1, local=True, loss_local_mse_lambda=1e-2,
                  loss_local_lpips_lambda=1.0, loss_local_id_lambda=0.1, adj=True, loss_adj_mse_lambda=1e-2,
                  loss_adj_lpips_lambda=1.0, loss_adj_id_lambda=0.1, loss_adj_batch=n_adj, loss_adj_lambda=1.0,
                  loss_adj_alpha_range_min=0, loss_adj_alpha_range_max=15, glob=True, loss_global_lambda=1.0,
                  loss_global_batch=draws["z_global"].shape[0], target_idx=0, target="extra", target_d=30.0)
    import os

    os.chdir(run)
    with contextlib.suppress(_Stop):
        U.unlearn(**kwargs)
    if not state["stepped"]:
        raise SystemExit("the reference loop ended without an optimiser step")
    torch.save({"total": state["total"], "loss_dict": {k: float(v) for k, v in postfix.items()},
                "lpips_calls": lpips_calls, "id_calls": id_calls, "mse_calls": mse_calls,
                "grads": state["grads"], "adapters": state["adapters"], "w_u": w_u, "renders": seeds},
               work / f"reference_{kind}.pt")
    print(json.dumps({"kind": kind, "total": state["total"], "renders": seeds, "lpips_calls": len(lpips_calls)}))


if __name__ == "__main__":
    main()
