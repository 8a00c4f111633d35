"""The measured-series file of benchmarks/many_identities.py: a rerun's rows replace the same measurement and
leave every other series alone, so the docs plot can hold series measured in different runs."""

import json

import pytest

from _benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def many():
    return load_benchmark("many_identities")


def _row(kind, people, fraction, field="conv1x1", generator="aaaaaaaaaaaa"):
    return {"kind": kind, "method": "legato", "people": people, "iterations": 100, "forgotten_fraction": fraction,
            "id_preservation": 0.9, "field": field, "generator": generator}


def test_merge_replaces_the_same_measurement_and_keeps_the_rest(many, tmp_path):
    path = tmp_path / "measured.json"
    path.write_text(json.dumps({"about": "x", "generators": {"aaaaaaaaaaaa": "cycle 1"},
                                "rows": [_row("continual", 10, 0.5), _row("continual", 20, 0.4),
                                         _row("continual", 10, 0.9, generator="bbbbbbbbbbbb")],
                                "inference": {"source": 1.0, "stacked": {"2": 1.7}}}))
    data = many.merge_measured([_row("continual", 10, 1.0), _row("continual", 10, 1.0, field="keyed")],
                               {"source": 2.0, "one_set_keyed": {1: 2.6, 200: 2.4}, "one_set": {}}, path)
    again = json.loads(path.read_text())
    assert again == json.loads(json.dumps(data))
    by_key = {(r["field"], r["people"], r["generator"]): r["forgotten_fraction"] for r in again["rows"]}
    assert by_key == {("conv1x1", 10, "aaaaaaaaaaaa"): 1.0, ("conv1x1", 20, "aaaaaaaaaaaa"): 0.4,
                      ("conv1x1", 10, "bbbbbbbbbbbb"): 0.9, ("keyed", 10, "aaaaaaaaaaaa"): 1.0}
    # costs are kept as ratios to the source of the run that measured them; groups not measured stay
    assert again["inference"]["one_set_keyed"] == {"1": 1.3, "200": 1.2}
    assert again["inference"]["stacked"] == {"2": 1.7}
    assert "one_set" not in again["inference"]


def test_rows_without_a_generator_take_the_shipped_one(many, tmp_path):
    row = _row("simultaneous", 1, 1.0)
    del row["generator"]
    data = many.merge_measured([row], None, tmp_path / "m.json")
    assert data["rows"][0]["generator"] == many.generator_tag()
    assert len(many.generator_tag()) == 12


def test_plot_draws_one_line_per_series(many, tmp_path):
    rows = [_row("continual", n, 1.0, field="keyed") for n in (10, 20)] + [_row("simultaneous", 1, 1.0)]
    many.plot(rows, {"source": 1.0, "stacked": {"1": 1.1, "2": 1.7}}, tmp_path / "p.png", {"aaaaaaaaaaaa": "c1"})
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert many.series_label("continual", "legato", "keyed", "aaaaaaaaaaaa", {"aaaaaaaaaaaa": "c1"}).endswith(
        "--field keyed [c1]")
