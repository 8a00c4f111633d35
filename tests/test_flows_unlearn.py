"""`legato.flows.unlearn.run` and the `legato flow` commands, on tiny random networks (the slow test: the
shipped ones)."""

import base64
import json

import pytest
import torch

pytest.importorskip(
    "sklearn", reason="the digits flow needs scikit-learn (pip install 'legato-unlearn[flows]')"
)

from legato.cli.main import main  # noqa: E402
from legato.errors import InputError, TrainingError  # noqa: E402
from legato.flows.classifier import ClassifierConfig, DigitClassifier  # noqa: E402
from legato.flows.unet import FlowUNet, UNetConfig  # noqa: E402
from legato.flows.unlearn import run  # noqa: E402
from legato.flows.weights import FLOW_WEIGHTS, load_flow, save_weights  # noqa: E402
from legato.ode import load_bundle  # noqa: E402

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
    m = run(out, 3, method="legato", seed=0, steps=3, **FAST, **nets)
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
    a = run(tmp_path / "a", 1, seed=5, steps=2, **FAST, **nets)
    b = run(tmp_path / "b", 1, seed=5, steps=2, **FAST, **nets)
    drop = ("wall_s", "train_wall_s")
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def test_finetune_saves_the_tuned_unet(tmp_path, nets):
    out = tmp_path / "ft"
    m = run(out, 0, method="finetune", steps=2, **FAST, **nets)
    assert (out / "adapter" / "model.safetensors").is_file()
    assert m["trained_fraction"] == 1.0 and m["method"] == "finetune"


def test_failure_leaves_no_folder_and_bad_input_is_refused(tmp_path, nets):
    out = tmp_path / "broken"
    with pytest.raises(TrainingError):
        run(out, 2, steps=2, lambda_forget=float("nan"), **FAST, **nets)
    assert not out.exists() and not any(tmp_path.glob(".broken*"))
    with pytest.raises(InputError):
        run(out, 10, **nets)
    with pytest.raises(InputError):
        run(out, 2, method="guide", **nets)
    with pytest.raises(InputError, match="unknown option"):
        run(out, 2, learning_rate=1.0, **nets)
    with pytest.raises(InputError, match="no module"):
        run(out, 2, steps=1, sites=("middle",), **{**FAST, **nets})
    assert not out.exists()


def test_cli_unlearn_sample_and_table(tmp_path, nets, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "flow",
            "unlearn",
            "--forget-class",
            "4",
            "--out",
            str(out),
            "--steps",
            "2",
            "--hidden",
            "4",
            "--n-forget",
            "2",
            "--n-retain",
            "1",
            "--weights",
            nets["flow_weights"],
            "--classifier",
            nets["classifier_weights"],
        ]
    )
    assert code == 0
    assert (out / "metrics.json").is_file() and "forgotten class 4" in capsys.readouterr().out
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


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    for args in (
        ["flow", "unlearn", "--forget-class", "11", "--out", str(tmp_path / "x")],
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
