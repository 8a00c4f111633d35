"""`legato.flows.unlearn.run` and the `legato flow` commands, on tiny random networks (the slow test: the
shipped ones)."""

import base64
import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip(
    "sklearn", reason="the digits flow needs scikit-learn (pip install 'legato-unlearn[flows]')"
)

from legato.cli.main import main  # noqa: E402
from legato.errors import InputError, TrainingError  # noqa: E402
from legato.flows import unlearn as flow_unlearn  # noqa: E402
from legato.flows import weights as flow_weights  # noqa: E402
from legato.flows.classifier import ClassifierConfig, DigitClassifier  # noqa: E402
from legato.flows.unet import FlowUNet, UNetConfig  # noqa: E402
from legato.flows.unlearn import run  # noqa: E402
from legato.flows.weights import FLOW_WEIGHTS, load_flow, save_weights  # noqa: E402
from legato.ode import load_bundle  # noqa: E402
from legato.unlearning.methods import load_result  # noqa: E402

TINY = UNetConfig(channels=(8, 8, 8), emb_dim=16, groups=4)
FAST = dict(
    n_forget=4,
    n_retain=1,
    leakage_draws=1,
    strengths=(0.0, 1.0),
    sampler_steps=1,
    hidden=4,
    batch_retain=8,
    batch_forget=4,
)


@pytest.fixture
def nets(tmp_path):
    torch.manual_seed(0)
    flow = FlowUNet(TINY)
    with torch.no_grad():
        flow.out.weight.normal_(0, 0.1)
    clf = DigitClassifier(ClassifierConfig(width=4, feature_dim=8))
    fp = save_weights(flow, tmp_path / "flow.safetensors", "digits-flow-unet", TINY.to_dict())
    cp = save_weights(clf, tmp_path / "clf.safetensors", "digits-classifier", {"width": 4, "feature_dim": 8})
    return {"flow_weights": str(fp), "classifier_weights": str(cp)}


def test_legato_run_writes_a_complete_folder(tmp_path, nets):
    out = tmp_path / "run"
    m = run(out, 3, method="legato", seed=0, iterations=3, **FAST, **nets)
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter",
        "metrics.json",
        "log.jsonl",
        "report.html",
        "samples_teacher.png",
        "samples_unlearned.png",
        "sweep_forgotten_class.png",
        "sweep_plot.png",
    } <= names
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert len((out / "log.jsonl").read_text().splitlines()) >= 2
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="samples' not in html
    png = html.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(png)[:4] == b"\x89PNG"
    model = load_flow(nets["flow_weights"])
    adapters = load_bundle(out / "adapter", model)
    assert adapters.num_trainable() == m["trained_params"] < m["unet_params"]
    assert m["forget_class"] == 3 and [r["strength"] for r in m["sweep"]] == [0.0, 1.0]
    assert set(m["checks"]) and all(isinstance(v, bool) for v in m["checks"].values())


def test_same_seed_same_metrics(tmp_path, nets):
    a = run(tmp_path / "a", 1, seed=5, iterations=2, **FAST, **nets)
    b = run(tmp_path / "b", 1, seed=5, iterations=2, **FAST, **nets)
    drop = ("wall_s", "train_wall_s")
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def test_finetune_saves_the_tuned_unet_in_the_fine_tuning_format(tmp_path, nets):
    out = tmp_path / "ft"
    m = run(out, 0, method="finetune", iterations=2, **FAST, **nets)
    assert m["trained_fraction"] == 1.0 and m["method"] == "finetune"
    # the image methods' loader reads it: the tuned weights land in a fresh UNet, and they moved
    teacher, model = load_flow(nets["flow_weights"]), load_flow(nets["flow_weights"])
    loaded = load_result(out / "adapter", model)
    assert loaded.method == "finetune" and loaded.dial is None
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, dict(teacher.named_parameters())[n])]
    assert moved and len(loaded.state) == len(list(model.parameters()))


def _interrupt_at(monkeypatch, step: int):
    real = flow_unlearn.FlowObjective.step

    def stepping(self, k, gen):
        if k == step:
            raise KeyboardInterrupt
        return real(self, k, gen)

    monkeypatch.setattr(flow_unlearn.FlowObjective, "step", stepping)
    return real


@pytest.mark.parametrize("method", ["legato", "finetune"])
def test_interrupted_run_resumes_bit_identical(tmp_path, nets, monkeypatch, method):
    opts = dict(iterations=7, checkpoint_every=2, log_every=1, progress=False, **FAST, **nets)
    full = run(tmp_path / "full", 2, method=method, seed=3, **opts)
    real = _interrupt_at(monkeypatch, 6)  # inside step 6: steps 1–5 are done, the last checkpoint was step 4
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", 2, method=method, seed=3, **opts)
    assert not (tmp_path / "cut").exists()
    ckpt = torch.load(tmp_path / "cut.partial" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 5  # Ctrl-C keeps exactly the completed steps
    monkeypatch.setattr(flow_unlearn.FlowObjective, "step", real)
    with pytest.raises(InputError, match="already exists"):
        run(tmp_path / "full", 2, method=method, seed=3, **opts)
    resumed = run(tmp_path / "cut", 2, method=method, seed=3, resume=True, **opts)
    drop = ("wall_s", "train_wall_s")
    assert {k: v for k, v in full.items() if k not in drop} == {k: v for k, v in resumed.items() if k not in drop}
    name = "adapter_model.safetensors" if method == "legato" else "finetuned_weights.safetensors"
    a = load_file(str(tmp_path / "full" / "adapter" / name))
    b = load_file(str(tmp_path / "cut" / "adapter" / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))  # every step logged once, none twice after the resume
    assert not (tmp_path / "cut.partial").exists() and not (tmp_path / "cut" / "checkpoint.pt").exists()
    with pytest.raises(InputError, match="nothing to resume"):
        run(tmp_path / "other", 2, method=method, seed=3, resume=True, **opts)


def test_failure_leaves_no_folder_and_bad_input_is_refused(tmp_path, nets):
    out = tmp_path / "broken"
    with pytest.raises(TrainingError):
        run(out, 2, iterations=2, lambda_forget=float("nan"), **FAST, **nets)
    assert not out.exists() and not any(tmp_path.glob("broken*")) and not any(tmp_path.glob(".broken*"))
    with pytest.raises(InputError):
        run(out, 10, **nets)
    with pytest.raises(InputError):
        run(out, 2, method="guide", **nets)
    with pytest.raises(InputError, match="unknown option"):
        run(out, 2, learning_rate=1.0, **nets)
    with pytest.raises(InputError, match="no module"):
        run(out, 2, iterations=1, sites=("middle",), **{**FAST, **nets})
    assert not out.exists()


def test_cli_unlearn_sample_and_table(tmp_path, nets, capsys, monkeypatch):
    # the one forgetting command; the shipped weights replaced by the tiny ones
    monkeypatch.setattr(flow_weights, "FLOW_WEIGHTS", type(FLOW_WEIGHTS)(nets["flow_weights"]))
    monkeypatch.setattr(flow_weights, "CLASSIFIER_WEIGHTS", type(FLOW_WEIGHTS)(nets["classifier_weights"]))
    out = tmp_path / "cli"
    args = ["unlearn", "--generator", "digits-flow", "--forget-class", "4", "--out", str(out), "--iterations", "2",
            "--hidden", "4"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert (out / "metrics.json").is_file() and "forgotten class 4" in said and "report:" in said
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 2 and m["config"]["hidden"] == 4 and m["config"]["lr"] == 1e-3
    html = (out / "report.html").read_text()  # the image methods' report page, with the flow's checks
    assert 'class="cards"' in html and "forgotten class: classifier accuracy" in html and "Strength" not in html
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(["flow", "table", str(out)]) == 0 and "legato (class 4)" in capsys.readouterr().out
    code = main(
        [
            "flow",
            "sample",
            "--out",
            str(tmp_path / "g.png"),
            "--per-class",
            "1",
            "--steps",
            "1",
            "--weights",
            nets["flow_weights"],
            "--adapter",
            str(out / "adapter"),
            "--strength",
            "0.5",
        ]
    )
    assert code == 0
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["flow", "unlearn", "--forget-class", "4", "--out", str(tmp_path / "x")]) != 0  # one path only


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    for args in (
        ["unlearn", "--generator", "digits-flow", "--forget-class", "11", "--out", str(tmp_path / "x")],
        ["unlearn", "--generator", "digits-flow", "--out", str(tmp_path / "x")],
        ["flow", "table", str(tmp_path / "nothing")],
        ["flow", "sample", "--out", str(tmp_path / "g.png"), "--classes", "a,b"],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


@pytest.mark.slow
@pytest.mark.skipif(not FLOW_WEIGHTS.is_file(), reason="no shipped digits-flow weights")
def test_shipped_flow_forgets_class_3(tmp_path):
    torch.set_num_threads(1)
    m = run(tmp_path / "run", 3, method="legato", seed=0)
    assert m["unlearned"]["forget_acc"] <= 0.20
    assert m["retain_drop_points"] <= 3.0
    assert m["trained_fraction"] <= 0.05
    assert m["sweep_monotone"]
