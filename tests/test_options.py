"""One options layer: every setting of `UnlearnConfig` under the same name on the command line, in a batch
request and in the benchmarks' `--set`, and a preset that gives the same run through each."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from legato import batch
from legato.cli.main import app, main
from legato.errors import InputError
from legato.generators import load
from legato.unlearning import options
from legato.unlearning.config import LossWeights, UnlearnConfig


def _unlearn_parameters() -> set[str]:
    command = next(c for c in app.registered_commands if c.name == "unlearn")
    return set(inspect.signature(command.callback).parameters)


def test_every_setting_has_one_flat_name():
    fields = {f.name for f in dataclasses.fields(UnlearnConfig)} - {"weights"}
    assert set(options.SETTINGS) == fields
    assert {n.removeprefix("lambda_") for n in options.WEIGHTS} == {f.name.rstrip("_")
                                                                     for f in dataclasses.fields(LossWeights)}
    assert len(set(options.NAMES)) == len(options.NAMES)


def test_every_setting_is_an_option_of_legato_unlearn_under_its_own_name():
    missing = set(options.NAMES) - _unlearn_parameters()
    assert not missing, f"settings the CLI does not reach: {sorted(missing)}"


def test_a_batch_request_reaches_every_setting_and_rebuilds_the_config():
    gen = load("toy")
    changed = UnlearnConfig.for_generator(gen, lr=3e-3, n_adjacent=3, alpha_max="0.5x", stop_patience=4,
                                          checkpoint_every=7, trajectory_site=-1, lambda_global_=5.0,
                                          lambda_adjacency=0.5, field="keyed", gate_floor=0.1,
                                          perceptual="multiscale-l1")
    flat = options.flatten(changed)
    assert set(flat) == set(options.NAMES)
    rebuilt = batch._config({"identity": "seed:1", "options": flat}, gen)
    assert rebuilt.to_dict() == changed.to_dict()
    with pytest.raises(InputError, match="did you mean n_adjacent"):
        batch._config({"identity": "seed:1", "options": {"n_adjacnt": 3}}, gen)


def test_the_benchmarks_set_parses_through_the_same_layer():
    assert options.parse("n_global", "4") == 4 and options.parse("lambda_global", "2.5") == 2.5
    assert options.parse("early_stop", "true") is True and options.parse("lora_rank", "none") is None
    assert options.parse("lora_rank", "8") == 8 and options.parse("distance", "1x") == "1x"
    with pytest.raises(InputError, match="expected a int"):
        options.parse("n_global", "many")
    with pytest.raises(InputError, match="unknown"):
        options.parse("no_such_setting", "1")


def _captured(monkeypatch) -> list[dict]:
    """Replace the run itself: record the config and evaluation sizes a command would run with."""
    import legato.unlearning.run as run_module

    seen = []

    def fake_unlearn(generator, identity, out, config, **kwargs):
        seen.append({"config": config.to_dict(), "n_random": kwargs["n_random"], "n_fid": kwargs["n_fid"]})
        return {}

    monkeypatch.setattr(run_module, "unlearn", fake_unlearn)
    monkeypatch.setattr("legato.cli.unlearn._print_table", lambda metrics, out: None)
    return seen


@pytest.mark.parametrize("extra", [[], ["--preset", "reference"], ["--n-adjacent", "3", "--lambda-global", "4",
                                                                    "--alpha-max", "0.3x"]])
def test_the_cli_and_a_batch_request_give_the_same_run(tmp_path, monkeypatch, extra):
    seen = _captured(monkeypatch)
    assert main(["unlearn", "--generator", "toy", "--identity", "seed:1", "--out", str(tmp_path / "cli"), *extra]) == 0
    names = {"--preset": "preset", "--n-adjacent": "n_adjacent", "--lambda-global": "lambda_global",
             "--alpha-max": "alpha_max"}
    flat = {names[extra[i]]: extra[i + 1] for i in range(0, len(extra), 2)}
    flat = {k: (int(v) if k == "n_adjacent" else float(v) if k == "lambda_global" else v) for k, v in flat.items()}
    row = batch.run_request({"identity": "seed:1", "generator": "toy", "options": flat}, tmp_path / "batch" / "r")
    assert row["status"] == "finished", row
    assert len(seen) == 2 and seen[0] == seen[1]
    if "reference" in extra:  # the preset's evaluation size reaches a batch too
        assert seen[0]["n_fid"] == options.REFERENCE_N_FID and seen[0]["config"]["reduction"] == "sum"
    else:
        assert seen[0]["n_fid"] == options.DEFAULT_N_FID and seen[0]["n_random"] == options.DEFAULT_N_RANDOM


def test_help_names_the_synthfaces_defaults_where_they_differ_from_the_reference():
    from typer.testing import CliRunner

    from legato.cli.main import app
    from legato.synthfaces.generator import SynthFacesGenerator

    help_text = " ".join(CliRunner().invoke(app, ["unlearn", "--help"], env={"COLUMNS": "200"}).output.split())
    defaults = SynthFacesGenerator.unlearning_defaults
    legato = defaults["methods"]["legato"]
    for shown in (f"SynthFaces {defaults['lambda_identity']:g}", f"SynthFaces {defaults['lambda_global_']:g}",
                  f"SynthFaces {legato['hidden']}", f"SynthFaces legato {legato['step_size']:g}",
                  f"SynthFaces adapters and LoRA {legato['lr']:g}", f"SynthFaces {defaults['gate_floor']:g}",
                  f"SynthFaces {defaults['stop_consolidate']}"):
        assert shown in help_text, shown


def test_every_backend_shares_the_training_settings_under_the_same_flat_names(monkeypatch, tmp_path):
    """lfw-faces and the digits flow take the settings every backend shares (`TrainingOptions`) under the
    names `UnlearnConfig` gives them, and the CLI hands them over through the same layer."""
    pytest.importorskip("diffusers")
    from legato.flows.unlearn import FlowUnlearnConfig
    from legato.lfwfaces.erase import EraseConfig
    from legato.unlearning.config import TrainingOptions

    shared = {f.name for f in dataclasses.fields(TrainingOptions)}
    assert shared <= set(options.NAMES), f"shared settings without a flat name: {shared - set(options.NAMES)}"
    assert shared <= _unlearn_parameters()
    for cls in (EraseConfig, FlowUnlearnConfig):
        assert shared <= {f.name for f in dataclasses.fields(cls)}
    flat = {"iterations": 7, "lr": 2e-3, "seed": 3, "hidden": 16, "lambda_trajectory": 0.5, "stop_every": 5,
            "checkpoint_every": 9, "target": "average", "field": None}
    for cls in (EraseConfig, FlowUnlearnConfig):
        config = options.backend_config(cls, flat)
        settings = config.loop_settings()
        assert (settings.iterations, settings.lr, settings.seed, settings.checkpoint_every) == (7, 2e-3, 3, 9)
        assert (config.hidden, config.lambda_trajectory, config.stop_every) == (16, 0.5, 5)
    with pytest.raises(InputError, match="--lr must be positive"):
        options.backend_config(EraseConfig, {"lr": -1.0})
    with pytest.raises(InputError, match="at least 1"):
        options.backend_config(FlowUnlearnConfig, {"iterations": 0})
    # the CLI's lfw-faces path builds its config through the same layer
    seen = []

    def fake_run(out, identity, config, **kwargs):
        seen.append(config)
        raise InputError("recorded; nothing runs")

    monkeypatch.setattr("legato.lfwfaces.unlearn.run", fake_run)
    code = main(["unlearn", "--generator", "lfw-faces", "--identity", "Colin_Powell", "--out", str(tmp_path / "r"),
                 "--iterations", "7", "--lr", "0.002", "--seed", "3", "--hidden", "16", "--lambda-trajectory", "0.5",
                 "--stop-every", "5", "--checkpoint-every", "9"])
    assert code == 2 and seen and seen[0] == options.backend_config(EraseConfig, flat)
