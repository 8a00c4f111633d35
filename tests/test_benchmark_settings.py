"""benchmarks/run.py turns its command line into the settings its runs use: an option the table is run
with must reach the unlearning config, and a nonsense value must stop the run before hours are spent."""

import pytest

from _benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("run")


def test_lambda_global_reaches_the_unlearning_config(bench):
    from legato.synthfaces import load_generator
    from legato.unlearning.config import UnlearnConfig

    gen = load_generator()
    default = UnlearnConfig.for_generator(gen, method="legato", iterations=3)
    _, name, mode, parts = bench.settings(["--quick", "--only", "table", "--lambda-global", "17.5",
                                           "--field", "keyed", "--gate-floor", "0.05"])
    assert name == "quick" and parts == ["table"]
    cfg = UnlearnConfig.for_generator(gen, method="legato", iterations=3, **mode["adapter_options"])
    assert cfg.weights.global_ == 17.5 != default.weights.global_
    assert cfg.gate_floor == 0.05
    _, _, plain, _ = bench.settings(["--quick"])
    assert "lambda_global_" not in plain["adapter_options"]  # the generator's default is kept


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_negative_or_nan_lambda_global_is_refused(bench, value, capsys):
    with pytest.raises(SystemExit):
        bench.settings(["--lambda-global", value])
    assert "must be a number ≥ 0" in capsys.readouterr().err


def test_set_passes_any_config_setting_typed_like_its_default(bench):
    from legato.synthfaces import load_generator
    from legato.unlearning.config import UnlearnConfig

    _, _, mode, _ = bench.settings(["--set", "n_global=4", "--set", "lambda_adjacency=2.5",
                                    "--set", "lambda_global=12", "--set", "target=average"])
    assert mode["adapter_options"] == {"n_global": 4, "lambda_adjacency": 2.5, "lambda_global_": 12.0,
                                       "target": "average"}
    cfg = UnlearnConfig.for_generator(load_generator(), method="legato", **mode["adapter_options"])
    assert (cfg.n_global, cfg.weights.adjacency, cfg.weights.global_, cfg.target) == (4, 2.5, 12.0, "average")


@pytest.mark.parametrize("item", ["n_global=four", "n_global=2.5", "no_such_setting=1", "n_global", "weights=1"])
def test_set_refuses_an_unknown_key_or_a_mistyped_value(bench, item, capsys):
    with pytest.raises(SystemExit):
        bench.settings(["--set", item])
    assert "--set" in capsys.readouterr().err


def test_a_collapse_variant_keeps_its_own_folder_whichever_variants_run():
    run = load_benchmark("run")
    names = list(run.COLLAPSE_REFERENCE)
    only_guide = [n for n in names if run.COLLAPSE_REFERENCE[n][0] == "guide"]
    assert run._collapse_folders(only_guide) == {only_guide[0]: names.index(only_guide[0])} and names.index(
        only_guide[0]) > 0
    assert run._collapse_folders(names) == {n: k for k, n in enumerate(names)}


def test_the_time_to_a_verified_forget_compares_legato_with_guide_person_by_person():
    run = load_benchmark("run")

    def row(person, method, verified, checks, seconds):
        return {"scenario": "in-domain", "identity": person, "method": method, "seconds": seconds,
                "wall_seconds": 60.0, "stopped_early": verified is not None, "seconds_to_verified": verified,
                "stop_check_seconds": checks}

    rows = [row("a", "legato", 5.0, 2.0, 30.0), row("a", "guide", 20.0, 8.0, 40.0),
            row("b", "legato", 6.0, 2.0, 30.0), row("b", "guide", None, 30.0, 50.0)]  # b: guide never verified
    text = "\n".join(run._time_ratio_lines(rows))
    # a: 5 / 20 = 0.25; b: 6 / (50 + 30) = 0.075 (an upper bound: guide's own time was longer still)
    assert "legato / guide: 0.16× (worst 0.25×" in text
    assert "verified: legato 2/2, guide 1/2" in text and "for those 1 the ratio is an upper bound" in text
    # runs without early stop (no stop checks recorded) give no such line
    plain = [{**r, "seconds_to_verified": None, "stop_check_seconds": None} for r in rows]
    assert "verified forget" not in "\n".join(run._time_ratio_lines(plain))
