"""The unlearning engine end to end on the tiny toy generator: outputs, reproducibility, resume, errors."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from legato.errors import InputError, TrainingError
from legato.unlearning import trainer as trainer_module
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.run import unlearn

FAST = dict(n_random=6, n_fid=24, progress=False, report=False)


def config(**kw):
    base = dict(iterations=12, lr=1e-3, hidden=16, log_every=2, eval_every=4, checkpoint_every=4, seed=3)
    base.update(kw)
    return UnlearnConfig(**base)


@pytest.mark.parametrize("method", ["legato", "guide", "residual", "baseline"])
def test_every_method_leaves_a_complete_run_folder(tmp_path, method):
    out = tmp_path / method
    metrics = unlearn("toy", "seed:5", out, config(method=method), **FAST)
    assert (out / "metrics.json").is_file() and (out / "config.json").is_file()
    assert (out / "log.jsonl").is_file()
    assert not (tmp_path / f"{method}.partial").exists()
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("method", "id_target", "id_preservation", "fid_pre", "trainable_params", "base_params",
                "seconds", "peak_rss_mb", "perceptual_backend"):
        assert key in saved, key
    assert saved["method"] == method == metrics["method"]
    if method in ("legato", "residual"):
        assert (out / "adapter" / "adapter_config.json").is_file()
        assert saved["trainable_params"] < saved["base_params"]
    else:
        assert (out / "adapter" / "finetuned_weights.safetensors").is_file()
    target = load_file(str(out / "adapter" / "target_ws.safetensors"))
    assert target["ws"].shape == (1, 4, 16)
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 12 and "id_target" in lines[-1]


def test_same_seed_same_numbers(tmp_path):
    a = unlearn("toy", "seed:5", tmp_path / "a", config(), **FAST)
    b = unlearn("toy", "seed:5", tmp_path / "b", config(), **FAST)
    for key in ("id_target", "id_preservation", "fid_pre"):
        assert a[key] == b[key], key
    wa = load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("field", ["conv1x1", "gated"])
def test_interrupted_run_resumes_to_the_same_adapter(tmp_path, monkeypatch, field):
    # the gated field's membership term draws its negatives from a bank of latents the run has seen: the
    # checkpoint carries that bank, or a resumed run would draw from an empty one
    unlearn("toy", "seed:5", tmp_path / "full", config(field=field), **FAST)
    real_local_terms = trainer_module._local_terms
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * 7 + 1:  # two local-term calls per step: interrupt inside step 8
            raise KeyboardInterrupt
        return real_local_terms(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "_local_terms", interrupting)
    with pytest.raises(KeyboardInterrupt):
        unlearn("toy", "seed:5", tmp_path / "cut", config(field=field), **FAST)
    assert not (tmp_path / "cut").exists()
    ckpt = torch.load(tmp_path / "cut.partial" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 7
    monkeypatch.setattr(trainer_module, "_local_terms", real_local_terms)
    unlearn("toy", "seed:5", tmp_path / "cut", config(field=field), resume=True, **FAST)
    full = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_nan_loss_stops_with_a_clear_error_and_no_run_folder(tmp_path):
    # before the first checkpoint there is nothing to resume: no folder stays, and the hint says so
    with pytest.raises(TrainingError, match="nothing was saved") as failed:
        unlearn("toy", "seed:5", tmp_path / "nan", config(lr=1e30, iterations=50), **FAST)
    assert "--resume" not in str(failed.value) and "nan" in str(failed.value).lower()
    assert not (tmp_path / "nan").exists() and not (tmp_path / "nan.partial").exists()


def test_a_failure_after_a_checkpoint_keeps_it_and_the_resume_hint_works(tmp_path, monkeypatch):
    real_local_terms = trainer_module._local_terms
    calls = {"n": 0}

    def failing_late(*args, **kwargs):
        calls["n"] += 1
        terms = real_local_terms(*args, **kwargs)
        if calls["n"] == 2 * 7 + 1:  # two calls a step: inside step 8, after the step-5 checkpoint
            terms = terms * float("nan")
        return terms

    monkeypatch.setattr(trainer_module, "_local_terms", failing_late)
    cfg = config(iterations=10, checkpoint_every=5)
    with pytest.raises(TrainingError, match="rerun with --resume"):
        unlearn("toy", "seed:5", tmp_path / "late", cfg, **FAST)
    assert (tmp_path / "late.partial" / "checkpoint.pt").is_file() and not (tmp_path / "late").exists()
    monkeypatch.setattr(trainer_module, "_local_terms", real_local_terms)
    unlearn("toy", "seed:5", tmp_path / "late", cfg, resume=True, **FAST)  # the hint's command works
    assert (tmp_path / "late" / "metrics.json").is_file() and not (tmp_path / "late.partial").exists()


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown method"):
        unlearn("toy", "seed:5", tmp_path / "x", config(method="magic"), **FAST)
    with pytest.raises(InputError, match="does not exist"):
        unlearn("toy", str(tmp_path / "missing.png"), tmp_path / "x", config(), **FAST)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image"):
        unlearn("toy", str(bad), tmp_path / "x", config(), **FAST)
    save_file({"ws": torch.zeros(1, 3, 16)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(InputError, match="shape"):
        unlearn("toy", f"latent:{tmp_path / 'w.safetensors'}", tmp_path / "x", config(), **FAST)
    assert not (tmp_path / "x").exists()


def test_the_reference_crop_without_a_crop_based_model_is_refused_before_the_inversion(tmp_path, monkeypatch):
    from legato.unlearning import run as run_module

    def no_inversion(*args, **kwargs):
        raise AssertionError("the inversion ran before the settings were checked")

    monkeypatch.setattr(run_module, "resolve_identity", no_inversion)
    with pytest.raises(InputError, match="--identity-crop align"):
        unlearn("toy", "seed:5", tmp_path / "x", config(identity_crop="reference"), **FAST)
    assert not (tmp_path / "x").exists()


def test_saved_latent_is_forgotten_like_its_seed(tmp_path):
    from legato.generators import load
    from legato.inversion.sources import resolve_identity

    gen = load("toy")
    ws = resolve_identity("seed:5", gen).ws
    torch.save(ws[0], tmp_path / "w.pt")
    assert torch.equal(resolve_identity(f"latent:{tmp_path / 'w.pt'}", gen).ws, ws)


def test_cli_user_errors_exit_2_with_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "legato.cli.main", "unlearn", *args],
                              capture_output=True, text=True)

    for args in (["--generator", "toy", "--identity", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")],
                 ["--generator", "toy", "--identity", "seed:1", "--method", "magic", "--out", str(tmp_path / "o")],
                 ["--generator", "nonexistent.pkl", "--identity", "seed:1", "--out", str(tmp_path / "o")]):
        r = run(*args)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_backend_defaults_apply_per_method_and_options_win():
    class Backend:
        unlearning_defaults = {"distance": "1x", "lambda_global_": 3.0,
                               "methods": {"legato": {"lr": 1e-3, "hidden": 64}}}

    leg = UnlearnConfig.for_generator(Backend(), method="legato")
    assert (leg.distance, leg.weights.global_, leg.lr, leg.hidden) == ("1x", 3.0, 1e-3, 64)
    guide = UnlearnConfig.for_generator(Backend(), method="guide")
    assert (guide.distance, guide.lr, guide.hidden) == ("1x", 1e-4, 256)  # reference lr for the others
    given = UnlearnConfig.for_generator(Backend(), method="legato", lr=5e-4, hidden=None)
    assert (given.lr, given.hidden) == (5e-4, 64)  # an option beats the backend; None keeps it
    assert "methods" in Backend.unlearning_defaults  # the backend's dict is not consumed


def test_refine_steps_come_from_the_config_unless_the_call_gives_them(tmp_path, monkeypatch):
    from legato.unlearning import run as run_module

    seen = []
    real = run_module.resolve_identity

    def spy(*args, **kwargs):
        seen.append(kwargs["refine_steps"])
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "resolve_identity", spy)
    unlearn("toy", "seed:5", tmp_path / "a", config(iterations=2, refine_steps=7), **FAST)
    unlearn("toy", "seed:5", tmp_path / "b", config(iterations=2, refine_steps=7), refine_steps=0, **FAST)
    assert seen == [7, 0]
    recorded = [json.loads((tmp_path / d / "config.json").read_text()) for d in ("a", "b")]
    assert [r["refine_steps"] for r in recorded] == [7, 0]
    assert [r["config"]["refine_steps"] for r in recorded] == [7, 0]
    with pytest.raises(InputError, match="refine-steps"):
        unlearn("toy", "seed:5", tmp_path / "c", config(refine_steps=-1), **FAST)
    assert not (tmp_path / "c").exists()

    class Backend:
        unlearning_defaults = {"refine_steps": 10}

    assert UnlearnConfig.for_generator(Backend()).refine_steps == 10
    assert UnlearnConfig.for_generator(Backend(), refine_steps=0).refine_steps == 0


def test_summary_says_when_the_target_was_forgotten():
    from legato.unlearning.run import summary_rows

    base = {"method": "legato", "trainable_params": 10, "base_params": 100, "seconds": 3.0}
    rows = dict(summary_rows({**base, "step_to_forget": 7, "seconds_to_forget": 1.234}))
    assert rows["forgotten after"] == "step 7 (1.2 s)"
    assert dict(summary_rows({**base, "step_to_forget": None, "seconds_to_forget": None}))["forgotten after"] == "—"


def test_a_judge_model_apart_from_the_loss_model(tmp_path):
    # the toy's own identity model drives the loss; the SynthFaces encoder judges
    fast = {**FAST, "n_fid": 0}  # the registry's SynthFaces judge has no FID features
    torch.manual_seed(0)  # the toy network is drawn from the global generator when it is loaded
    metrics = unlearn("toy", "seed:5", tmp_path / "judged", config(iterations=4), judge_model="synthfaces", **fast)
    from legato.identity import load as load_identity

    judge = load_identity("synthfaces")
    assert metrics["identity_model"] == judge.name and metrics["threshold"] == pytest.approx(judge.threshold)
    assert metrics["loss_identity_model"] != judge.name
    torch.manual_seed(0)
    same = unlearn("toy", "seed:5", tmp_path / "self", config(iterations=4), **fast)
    assert same["identity_model"] == same["loss_identity_model"]
    # the loss model alone decides the training: same losses whoever judges
    assert metrics["final_losses"] == same["final_losses"]


def test_the_run_report_carries_the_strength_dial(tmp_path):
    out = tmp_path / "rep"
    unlearn("toy", "seed:5", out, config(iterations=4), n_random=6, n_fid=24, progress=False)
    frames = sorted(p.name for p in (out / "dial").iterdir())
    assert frames[:2] == ["other_00.png", "other_01.png"] and len(frames) == 22  # 11 strengths × 2 people
    page = (out / "report.html").read_text()
    assert 'id="dial-data"' in page and 'type="range"' in page


def test_a_run_without_an_identity_model_warns_which_option_computes_the_metrics(tmp_path, monkeypatch, capsys):
    from legato.generators.toy import ToyGenerator

    monkeypatch.setattr(ToyGenerator, "identity_model", lambda self: None)
    metrics = unlearn("toy", "seed:5", tmp_path / "blind", config(iterations=2), **FAST)
    err = capsys.readouterr().err
    assert "warning: no identity model" in err and "--identity-model" in err
    assert metrics["id_target"] is None
