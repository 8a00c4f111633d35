"""The forgetting metrics of GUIDE / LEGATO, computed the same way for every method.

Every metric compares two `Generator`s on the same latents and cameras: `source` (the frozen original)
and `unlearned` (the same network with adapters, or a fine-tuned copy).

- `id_target`: mean cosine between identity embeddings of source and unlearned images of the forgotten
  latent, over the evaluation views ("ID"; lower is better).
- `id_others`: the same for the held-out photos' latents of that person ("ID_others"; lower is better).
- `id_preservation`: the same for random latents (other people must stay themselves; higher is better).
- `fid_pre`: FID between source and unlearned samples drawn from the same z's and cameras (lower is better);
  `fid_pre_floor` is the FID between the source and an independent draw of itself (the sampling floor).
- `delta_fid_real`: FID(unlearned, real) − FID(source, real), real = the backend's data (lower is better).
"""

from __future__ import annotations

import weakref
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from legato.errors import InputError
from legato.evaluation import fid as fidlib

DEFINITIONS = {
    "id_target": "Cosine similarity (identity model) between source and unlearned images of the forgotten "
                 "latent, averaged over the evaluation views. Lower = more forgotten.",
    "id_others": "The same for the latents of other photos of the same person, held out from training. "
                 "Lower = the forgetting generalises to the person.",
    "id_preservation": "The same for random latents: other people should keep their identity. Higher = better.",
    "fid_pre": "FID between source and unlearned samples from the same z's and cameras. Lower = the rest of "
               "the generator is untouched.",
    "delta_fid_real": "FID(unlearned, real data) − FID(source, real data). Near 0 or below = image quality kept.",
}


def _device(gen) -> torch.device:
    return gen.w_avg.device


NO_IDENTITY_NOTE = ("no identity model: the generator has none and none was given (--identity-model), so the "
                    "identity metrics were not computed")


def _optional_identity_model(source, identity_model):
    """The given identity model, else the backend's independent judge where it has one (`judge_model`),
    else its own identity model, else None (real backends may have none)."""
    if identity_model is not None:
        return identity_model
    judge = getattr(source, "judge_model", None)
    return judge() if callable(judge) else source.identity_model()


def _model_name(model) -> str:
    return str(getattr(model, "name", type(model).__name__))


def _check_ws(ws: torch.Tensor, gen, what: str) -> torch.Tensor:
    if not isinstance(ws, torch.Tensor) or ws.dim() != 3 or tuple(ws.shape[1:]) != (gen.num_ws, gen.w_dim):
        shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise InputError(f"{what} must have shape [B, {gen.num_ws}, {gen.w_dim}], got {shape}")
    return ws.to(_device(gen))


@torch.no_grad()
def _embed(gen, identity_model, ws: torch.Tensor, cams: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Identity embeddings `[B, E]` of `gen.synthesis(ws, cams)`, batch by batch."""
    out = []
    for i in range(0, ws.shape[0], batch_size):
        images = gen.synthesis(ws[i:i + batch_size], cams[i:i + batch_size])
        out.append(F.normalize(identity_model.embed(images).float(), dim=1))
    return torch.cat(out)


def _pairs(ws: torch.Tensor, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every latent under every view: ws `[B·V, ...]` (latent-major) and cameras `[B·V, c_dim]`."""
    b, v = ws.shape[0], views.shape[0]
    return ws.repeat_interleave(v, dim=0), views.repeat(b, 1)


def view_similarities(source, unlearned, identity_model, ws: torch.Tensor, views: torch.Tensor,
                      batch_size: int = 32, source_embeddings: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine between source and unlearned identity embeddings, `[B, V]` for latents `ws` × `views`.

    `source_embeddings` (`[B·V, E]`, latent-major) skips the source pass when it is already known.
    """
    w, c = _pairs(ws, views)
    e_s = source_embeddings if source_embeddings is not None else _embed(source, identity_model, w, c, batch_size)
    e_u = _embed(unlearned, identity_model, w, c, batch_size)
    return (e_s * e_u).sum(1).clamp(-1.0, 1.0).reshape(ws.shape[0], views.shape[0]).cpu()


def mean_ci95(values) -> tuple[float, list[float] | None]:
    """Mean and its 95% t-interval (None for fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    mean = float(x.mean())
    if x.size < 2:
        return mean, None
    from scipy.special import stdtrit  # Student-t quantile (lighter to import than scipy.stats)

    half = float(stdtrit(x.size - 1, 0.975) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, [mean - half, mean + half]


def random_ws(gen, n: int, seed: int) -> torch.Tensor:
    """`n` latents mapping(z) for z drawn on the CPU with `seed` (the same on every device)."""
    z = torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return gen.mapping(z.to(_device(gen)))


def _weights_of(model):
    """The module whose weights decide what `model` computes (an identity model, a wrapper of one, a
    feature extractor or a bound method of a module), or None."""
    from torch import nn

    for candidate in (getattr(model, "fn", None), model):
        candidate = getattr(candidate, "__self__", candidate)  # a bound method: its module
        inner = getattr(candidate, "model", candidate)
        if isinstance(inner, nn.Module):
            return inner
    return None


def source_cached(what: str, source, model, compute, **settings) -> torch.Tensor:
    """`compute()` (one tensor of the frozen source's, e.g. its embeddings or FID features), or the one kept
    in `$LEGATO_CACHE/source-features/` from an earlier call with the same source weights, model weights and
    settings: the source side of an evaluation is the same for every run of one generator, so a second run
    renders only the unlearned model. Computed every time when a model has no weights to fingerprint."""
    from torch import nn

    from legato import __version__
    from legato.ode.fingerprint import fingerprint
    from legato.tensor_cache import cached

    weights = _weights_of(model)
    if not isinstance(source, nn.Module) or weights is None:
        return compute()
    key = {"source": fingerprint(source), "model": fingerprint(weights), "version": __version__,
           "model_name": str(getattr(model, "name", type(model).__name__)),
           "crop": str(getattr(model, "crop", "fixed")), **settings}
    device = _device(source)
    return cached("source-features", what, key, lambda: {"value": compute()})["value"].to(device)


# source generator → {settings: its identity embeddings}; weak, so a dropped source takes its entry with it
_SOURCE_EMBEDDINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.no_grad()
def quick_scores(source, unlearned, target_ws: torch.Tensor, *, identity_model, n_random: int = 16,
                 n_views: int = 3, seed: int = 0) -> dict:
    """Cheap `id_target` and `id_preservation` for the collapse curve logged during training.

    Both are None when there is no identity model (neither given nor the backend's own). The source's
    embeddings are computed at the first call and reused while `source`, the model and settings stay the
    same (the source must not change in place between calls).
    """
    identity_model = _optional_identity_model(source, identity_model)
    if identity_model is None:
        return {"id_target": None, "id_preservation": None}
    target_ws = _check_ws(target_ws, source, "target_ws")
    views = source.views(n_views).to(_device(source))
    ws = torch.cat([target_ws, random_ws(source, n_random, seed + 1)])
    # the source is frozen, so its embeddings are the same at every call of one training run: keep them
    key = (id(identity_model), n_random, n_views, seed, target_ws.cpu().numpy().tobytes())
    cache = _SOURCE_EMBEDDINGS.setdefault(source, {})
    if key not in cache:
        if len(cache) >= 4:  # a run asks with one or two settings (forget check, collapse curve); keep those
            cache.clear()
        cache[key] = _embed(source, identity_model, *_pairs(ws, views), batch_size=256)
    sims = view_similarities(source, unlearned, identity_model, ws, views, batch_size=256,
                             source_embeddings=cache[key])
    k = target_ws.shape[0]
    return {"id_target": float(sims[:k].mean()), "id_preservation": float(sims[k:].mean()) if n_random else None}


def _progress(enabled: bool, total: int):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)


@torch.no_grad()
def _fid_features(source, unlearned, extractor, n: int, views: torch.Tensor, seed: int, batch_size: int,
                  advance) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of source and unlearned samples from the same z's; camera i is view i mod V."""
    ws = random_ws(source, n, seed + 2)
    cams = views[torch.arange(n) % views.shape[0]]
    f_s = source_fid_features(source, extractor, ws, cams, batch_size)
    fu = []
    for i in range(0, n, batch_size):
        fu.append(extractor(unlearned.synthesis(ws[i:i + batch_size], cams[i:i + batch_size])))
        advance()
    return f_s, torch.cat(fu)


@torch.no_grad()
def source_fid_features(source, extractor, ws: torch.Tensor, cams: torch.Tensor, batch_size: int) -> torch.Tensor:
    """FID features of the source's renders of `ws` under `cams` (kept between runs: `source_cached`)."""
    from legato.tensor_cache import tensor_digest

    def compute() -> torch.Tensor:
        return torch.cat([extractor(source.synthesis(ws[i:i + batch_size], cams[i:i + batch_size]))
                          for i in range(0, ws.shape[0], batch_size)])

    return source_cached("fid-features", source, extractor, compute, inputs=tensor_digest(ws, cams),
                         batch_size=batch_size).cpu()


@torch.no_grad()
def evaluate(source, unlearned, target_ws: torch.Tensor, held_out_ws: torch.Tensor | None = None, *,
             identity_model=None, n_views: int = 11, n_random: int = 100, n_fid: int = 1000,
             fid_features=None, real_images: torch.Tensor | None = None, seed: int = 0, batch_size: int = 32,
             progress: bool = True, fid_bootstrap: int = fidlib.FID_BOOTSTRAP, real_reference=None) -> dict:
    """All metrics (see the module docstring) as a JSON-ready dict.

    Shapes: `target_ws` `[T, num_ws, w_dim]`, `held_out_ws` `[k, num_ws, w_dim]`; with T > 1 (several
    people forgotten) `id_target` averages one value per person and `id_target_per_latent` (and
    `id_others_per_latent`) list them; `id_preservation_per_latent` lists each random person's score and
    `id_preservation_lost` counts those below the identity model's threshold. `n_fid = 0` skips both
    FIDs; `fid_bootstrap` resamples give each FID's interval (0: none). Each figure comes with `<key>_n`
    (its sample size) and, where it is an average over random draws, `<key>_ci95`: a t-interval over
    latents for the identity scores (over views for a single forgotten latent), ±1.96 bootstrap s.d. for FIDs.

    `identity_model` defaults to `source.identity_model()`; when there is none, every `id_*` value is None
    and `identity_note` says why (likewise `fid_note` when FID has no feature extractor).
    `real_reference` (a path: a folder of real images or a statistics .npz; see `evaluation.real_data`) gives
    ΔFID_real for a generator without real images of its own (EG3D); `delta_fid_real_note` says when there
    are none.
    """
    if n_views < 1 or n_random < 0 or n_fid < 0 or batch_size < 1:
        raise InputError("n_views and batch_size must be ≥ 1, n_random and n_fid ≥ 0")
    if n_fid == 1:
        raise InputError("n_fid must be 0 (no FID) or at least 2")
    identity_model = _optional_identity_model(source, identity_model)
    target_ws = _check_ws(target_ws, source, "target_ws")
    if held_out_ws is not None:
        held_out_ws = _check_ws(held_out_ws, source, "held_out_ws")
    device = _device(source)
    views = source.views(n_views).to(device)
    extractor = None
    if n_fid and (fid_features is not None or identity_model is not None):
        extractor = fidlib.resolve_features(fid_features, identity_model)
    real_ref = None
    if extractor is not None and real_reference is not None:
        from legato.evaluation.real_data import load_real_reference

        real_ref = load_real_reference(real_reference, extractor, n_fid, int(source.img_resolution), batch_size)
    elif extractor is not None and real_images is None:
        real_images = source.real_images(n_fid, seed)

    id_batches = 0 if identity_model is None else -(
        -(target_ws.shape[0] + (0 if held_out_ws is None else held_out_ws.shape[0]) + n_random) * n_views
        // batch_size)
    fid_batches = 0 if extractor is None else -(-n_fid // batch_size) * (3 if real_images is not None else 2)
    result: dict = {"identity_model": None if identity_model is None else _model_name(identity_model),
                    "views": n_views, "seed": seed}
    if identity_model is None:
        result["identity_note"] = NO_IDENTITY_NOTE
    else:
        # how the judge finds the face: fixed | dlib | mtcnn (--judge-crop; counts its fixed-crop fallbacks)
        result["judge_crop"] = str(getattr(identity_model, "crop", "fixed"))
        if getattr(identity_model, "threshold", None) is not None:
            result["threshold"] = float(identity_model.threshold)
    crop_counts = (identity_model.images, identity_model.fallbacks) if hasattr(identity_model, "fallbacks") else None
    if n_fid and extractor is None:
        result["fid_note"] = ("no FID features: no identity model to take them from and no Inception weights "
                              "given (--inception PATH), so FID was not computed")
    with _progress(progress, id_batches + fid_batches) as bar:
        task = bar.add_task("evaluating", total=id_batches + fid_batches) if bar is not None else None

        def advance(k: int = 1) -> None:
            if bar is not None:
                bar.advance(task, k)

        def id_metric(key: str, ws: torch.Tensor, per_view: bool, per_latent: bool = False) -> None:
            if identity_model is None:
                result[key], result[f"{key}_n"], result[f"{key}_ci95"] = None, 0, None
                return
            from legato.tensor_cache import tensor_digest

            e_s = source_cached("embeddings", source, identity_model,
                                lambda: _embed(source, identity_model, *_pairs(ws, views), batch_size),
                                inputs=tensor_digest(ws, views), batch_size=batch_size)
            sims = view_similarities(source, unlearned, identity_model, ws, views, batch_size,
                                     source_embeddings=e_s)
            advance(-(-ws.shape[0] * n_views // batch_size))
            # one forgotten latent: the views are the samples; several latents: one value per latent
            values = sims.ravel() if per_view else sims.mean(1)
            mean, ci = mean_ci95(values)
            ci = None if ci is None else [max(ci[0], -1.0), min(ci[1], 1.0)]  # a cosine stays in [-1, 1]
            result[key], result[f"{key}_n"], result[f"{key}_ci95"] = mean, int(values.numel()), ci
            if per_latent:  # several people forgotten: each one's score, for the fraction forgotten
                result[f"{key}_per_latent"] = [round(float(v), 5) for v in sims.mean(1)]

        several = target_ws.shape[0] > 1
        id_metric("id_target", target_ws, per_view=not several, per_latent=several)
        if held_out_ws is not None:
            id_metric("id_others", held_out_ws, per_view=held_out_ws.shape[0] == 1, per_latent=several)
        if n_random:
            id_metric("id_preservation", random_ws(source, n_random, seed + 1), per_view=False, per_latent=True)
            threshold = result.get("threshold")
            per_stranger = result.get("id_preservation_per_latent")
            if threshold is not None and per_stranger is not None:
                # strangers no longer recognised as themselves: the mean hides whether a few lookalikes were
                # forgotten outright or everyone drifted a little (docs/reference/metrics-and-verdicts.md)
                result["id_preservation_lost"] = sum(v < threshold for v in per_stranger)
        else:
            result.update(id_preservation=None, id_preservation_n=0, id_preservation_ci95=None)
        if crop_counts is not None:  # images embedded by this evaluation, and those MTCNN found no face in
            result["judge_crop_images"] = identity_model.images - crop_counts[0]
            result["judge_crop_fallbacks"] = identity_model.fallbacks - crop_counts[1]

        result["fid_features"] = None if extractor is None else extractor.name
        result.update(fid_pre=None, fid_pre_n=0, fid_pre_ci95=None,
                      delta_fid_real=None, delta_fid_real_n=0, delta_fid_real_ci95=None)
        if extractor is not None:
            f_s, f_u = _fid_features(source, unlearned, extractor, n_fid, views, seed, batch_size, advance)
            result["fid_pre"], result["fid_pre_ci95"] = fidlib.fid_pre(f_s, f_u, seed=seed, n_boot=fid_bootstrap)
            result["fid_pre_n"] = n_fid
            # the sampling floor fid_pre is judged against: the source against another draw of itself
            other = random_ws(source, n_fid, seed + 4)
            cams = views[torch.arange(n_fid) % views.shape[0]]
            f_o = source_fid_features(source, extractor, other, cams, batch_size)
            advance(-(-n_fid // batch_size))
            result["fid_pre_floor"] = fidlib.frechet_distance(f_s, f_o)
            if real_images is not None:
                real_images = real_images.to(device)
                f_r = []
                for i in range(0, real_images.shape[0], batch_size):
                    f_r.append(extractor(real_images[i:i + batch_size]))
                    advance()
                f_r = torch.cat(f_r)
                delta, fs, fu, ci = fidlib.delta_fid_real(f_s, f_u, f_r, seed=seed, n_boot=fid_bootstrap)
                result.update(delta_fid_real=delta, delta_fid_real_ci95=ci, delta_fid_real_n=int(f_r.shape[0]),
                              fid_real_source=fs, fid_real_unlearned=fu)
            elif real_ref is not None and real_ref.features is not None:
                delta, fs, fu, ci = fidlib.delta_fid_real(f_s, f_u, real_ref.features, seed=seed,
                                                          n_boot=fid_bootstrap)
                result.update(delta_fid_real=delta, delta_fid_real_ci95=ci, delta_fid_real_n=real_ref.n,
                              fid_real_source=fs, fid_real_unlearned=fu, real_images=real_ref.source,
                              real_features_cached=real_ref.cached)
            elif real_ref is not None:
                from legato.evaluation.real_data import fid_from_statistics

                fs = fid_from_statistics(f_s, real_ref.mu, real_ref.sigma)
                fu = fid_from_statistics(f_u, real_ref.mu, real_ref.sigma)
                result.update(delta_fid_real=fu - fs, delta_fid_real_ci95=None, fid_real_source=fs,
                              fid_real_unlearned=fu, real_images=real_ref.source,
                              delta_fid_real_note="from real statistics (mu, sigma): no interval")
            else:
                result["delta_fid_real_note"] = ("no real images: this generator has none of its own; give "
                                                 "--real-images DIR (its training images, e.g. FFHQ) or a "
                                                 "statistics .npz (mu, sigma)")
    return result
