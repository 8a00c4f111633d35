"""The pictures and the HTML page a run leaves next to its metrics."""

from __future__ import annotations

from pathlib import Path

import torch

from legato.files import atomic_write_json


def write_run_report(work: Path, source, unlearned, trainable, ident, metrics: dict, *, identity_model=None,
                     seed: int = 0) -> Path:
    """Pictures, sweep and collapse plots of a finished run, judged by the run's own `identity_model`."""
    from legato.evaluation import images as im
    from legato.evaluation import plots, report, sweep

    pictures: dict[str, Path] = {}
    figures: dict[str, Path] = {}
    views = source.views(5).to(ident.ws.device)
    with torch.no_grad():
        im.before_after_grid(source, unlearned, ident.ws, views, work / "forgotten_before_after.png")
        pictures["Forgotten identity: source (top) and unlearned (bottom), across views"] = \
            work / "forgotten_before_after.png"
        if ident.photo is not None:
            im.save_grid(ident.photo, work / "forgotten_photo.png", nrow=1)
            pictures["The photo that was forgotten"] = work / "forgotten_photo.png"
        if ident.held_out_ws is not None:
            front = source.views(1).to(ident.ws.device)
            rows = [ident.held_out_photos] if ident.held_out_photos is not None else []
            k = ident.held_out_ws.shape[0]
            rows += [source.synthesis(ident.held_out_ws, front.expand(k, -1)),
                     unlearned.synthesis(ident.held_out_ws, front.expand(k, -1))]
            im.save_grid(torch.cat(rows), work / "other_photos.png", nrow=k)
            pictures["Other photos of the person: photo, source, unlearned (rows)"] = work / "other_photos.png"
        g = torch.Generator().manual_seed(seed + 99)
        z = torch.randn(8, source.z_dim, generator=g).to(ident.ws.device)
        ws_r = source.mapping(z)
        front = source.views(1).to(ident.ws.device).expand(8, -1)
        im.save_grid(torch.cat([source.synthesis(ws_r, front), unlearned.synthesis(ws_r, front)]),
                     work / "random_others.png", nrow=8)
        pictures["Random other people: source (top) and unlearned (bottom)"] = work / "random_others.png"
    dial = None
    if trainable.dial is not None:
        strengths = [i / 10 for i in range(11)]
        result = sweep.run_sweep(source, unlearned, trainable.dial, ident.ws, ident.held_out_ws,
                                 strengths, identity_model=identity_model, seed=seed,
                                 n_random=16)  # the report's sweep: 16 random people keep it affordable
        trainable.dial.strength = 1.0
        atomic_write_json(work / "sweep.json", result)
        sweep.save_sweep_plot(result, work / "sweep.png")
        sweep.save_fade_strip(unlearned, trainable.dial, ident.ws, strengths, work / "fade_strip.png")
        trainable.dial.strength = 1.0
        figures["Strength sweep"] = work / "sweep.png"
        pictures["The forgotten face as strength goes 0 → 1"] = work / "fade_strip.png"
        if "spearman" in result:
            metrics["sweep_spearman_id_target"] = result["spearman"]
        metrics["dial_quality"] = {k: result.get(k) for k in ("spearman", "largest_step_fraction",
                                                              "crossing_strength", "preservation_min", "dial_ok")}
        dial = {"strengths": strengths, "points": result["points"], "threshold": result.get("threshold"),
                "frames": _dial_frames(unlearned, trainable.dial, ident.ws, ws_r[:1], strengths,
                                       work / "dial")}
    if (work / "log.jsonl").is_file():
        try:
            plots.plot_collapse(work / "log.jsonl", work / "collapse.png")
            figures["Collapse curve: id_target and id_preservation during training"] = work / "collapse.png"
        except Exception:  # a run too short to have evaluation points has no curve
            pass
    return report.write_report(work, metrics, pictures, figures,
                               title=f"legato — forgetting {ident.description} ({metrics['method']})", dial=dial)


def _dial_frames(unlearned, adapter_set, target_ws, other_ws, strengths, folder: Path) -> list[tuple[Path, Path]]:
    """PNGs of the forgotten face and one random other person (front view) at each strength."""
    from legato.evaluation import images as im
    from legato.evaluation.sweep import frames_at_strengths

    folder.mkdir(parents=True, exist_ok=True)
    images = frames_at_strengths(unlearned, adapter_set, torch.cat([target_ws[:1], other_ws[:1]]), strengths)
    frames = []
    for k, pair in enumerate(images):
        paths = (folder / f"target_{k:02d}.png", folder / f"other_{k:02d}.png")
        for img, path in zip(pair, paths, strict=True):
            im.save_grid(img[None], path, nrow=1, padding=0)
        frames.append(paths)
    return frames
