"""Forgetting a person of lfw-faces: every method's dial at 0 is the source, one step changes what it should,
the loop trains it, the run folder is whole, and the verdict rules decide as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from legato.errors import InputError  # noqa: E402
from legato.lfwfaces import erase, unlearn  # noqa: E402
from legato.lfwfaces.judge import Judged  # noqa: E402
from legato.lfwfaces.train import UNetShape, build_unet, save_folder, velocity  # noqa: E402
from legato.lfwfaces.world import load_world  # noqa: E402

SITES = ("mid_block", "up_blocks.0")
PEOPLE = ["A_a", "B_b", "C_c"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    unet = build_unet(3, 16, UNetShape(block_out_channels=(8, 16), attention_at=1, norm_num_groups=4))
    with torch.no_grad():  # a source whose class embeddings differ visibly (a fresh one starts near zero)
        unet.class_embedding.weight.normal_(0, 1)
    out = tmp_path_factory.mktemp("w") / "tiny"
    save_folder(unet, out, {"format": "legato-lfw-faces", "people": PEOPLE, "size": 16, "null_class": 3,
                            "total_steps": 0})
    return out


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEGATO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LEGATO_NO_CACHE", raising=False)


def _inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(4, 3, 16, 16, generator=g), torch.rand(4, generator=g), torch.tensor([0, 1, 2, 3])


def _train_steps(objective, steps: int = 2) -> None:
    """`steps` Adam steps of an objective outside the loop (lr 1e-2, one seeded draw per step)."""
    opt = torch.optim.Adam(objective.params, lr=1e-2)
    for step in range(steps):
        losses = objective.step(step, torch.Generator().manual_seed(step))
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("method", ["legato", "residual", "finetune", "lora", "embedding"])
def test_each_method_is_the_source_at_strength_zero_and_changes_after_a_step(tiny_folder, method):
    world = load_world(tiny_folder)
    x, t, y = _inputs()
    source = velocity(world.unet, x, t, y)
    config = erase.EraseConfig(method=method, iterations=2, sites=SITES, hidden=8, pool_forget=2, batch_forget=4,
                               batch_retain=4, lr=1e-2).validate()
    pool = erase.build_pool(world, 0, config, steps=3, guidance=1.5)
    assert pool.forget_x.shape == (2 * 3, 3, 16, 16) and pool.other_y.tolist().count(0) == 0
    student = erase.Student(world, 0, config)
    objective = erase.EraseObjective(student, pool, config)
    if method != "embedding":
        _train_steps(objective)
    objective.end()
    with torch.no_grad():
        student.set_strength(0.0)
        assert torch.allclose(velocity(student.unet, x, t, y), source, atol=1e-6)
        student.set_strength(1.0)
        after = velocity(student.unet, x, t, y)
    assert not torch.allclose(after[:1], source[:1], atol=1e-4)  # the forgotten person's velocity moved
    if method == "embedding":  # the edit touches the person only: the others' velocities are the source's
        assert torch.allclose(after[1:], source[1:], atol=1e-6)
        assert student.num_trainable == world.unet.class_embedding.weight.shape[1]
    if method in ("legato", "residual", "lora"):  # the base weights are untouched
        fresh = load_world(tiny_folder).unet.state_dict()
        base = {k: v for k, v in student.unet.state_dict().items() if "lora_" not in k}
        for k, v in fresh.items():
            key = k if k in base else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
            assert torch.equal(base[key], v), k


def test_a_wrong_site_or_method_is_one_clear_error(tiny_folder):
    world = load_world(tiny_folder)
    with pytest.raises(InputError, match="no block 'up_blocks.9'"):
        erase.Student(world, 0, erase.EraseConfig(sites=("up_blocks.9",)))
    with pytest.raises(InputError, match="unknown method"):
        erase.EraseConfig(method="guide").validate()
    with pytest.raises(InputError, match="at least 1"):
        erase.EraseConfig(method="legato", iterations=0).validate()


class _BrightnessJudge:
    """Stands in for dlib in the plumbing test: 'recognises' a sample as the person whose index matches its
    brightness tercile; finds a face everywhere."""

    name = "brightness"
    people = PEOPLE
    real_features = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    calls = 0

    def descriptors(self, images):
        type(self).calls += len(images)
        return torch.ones(len(images), dtype=torch.bool), images.mean(dim=(1, 2, 3))[:, None]

    def judge_descriptors(self, found, desc):
        nearest = torch.bucketize(desc[:, 0], torch.tensor([-0.1, 0.1]))
        return Judged(found=found, nearest=nearest, distance=torch.zeros(len(desc)))

    def judge(self, images):
        return self.judge_descriptors(*self.descriptors(images))

    def fid_features(self, images):
        return images.flatten(1)[:, :4].double()


@pytest.mark.parametrize("method", ["legato", "finetune", "lora", "embedding"])
def test_a_result_loads_back_onto_a_fresh_world(tiny_folder, tmp_path, method):
    config = erase.EraseConfig(method=method, iterations=0 if method == "embedding" else 2, sites=SITES, hidden=8,
                               pool_forget=2, batch_forget=4, batch_retain=4, lr=1e-2)
    world = load_world(tiny_folder)
    pool = erase.build_pool(world, 1, config, steps=3, guidance=1.5)
    student = erase.Student(world, 1, config)
    objective = erase.EraseObjective(student, pool, config)
    if method != "embedding":
        _train_steps(objective)
    objective.end()
    x, t, y = _inputs()
    with torch.no_grad():
        trained = velocity(student.unet, x, t, y)
    folder = tmp_path / "run"
    folder.mkdir()
    unlearn._save_result(student, folder / "adapter", {"method": method})
    (folder / "metrics.json").write_text(json.dumps({"method": method, "person": "B_b"}))
    _, unet, person = unlearn.load_result(folder, tiny_folder)
    assert person == 1
    with torch.no_grad():
        assert torch.allclose(velocity(unet, x, t, y), trained, atol=1e-5)
    # the attack leaves the model as it found it
    from legato.lfwfaces.attack import embedding_attack

    photos = torch.rand(3, 3, 16, 16) * 2 - 1
    result = embedding_attack(load_world(tiny_folder), unet, 1, photos, steps=2, batch_size=2, n_samples=2)
    assert result["images"].shape == (2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(velocity(unet, x, t, y), trained, atol=1e-5)


def test_a_run_writes_the_whole_folder_through_the_loop(tiny_folder, tmp_path):
    config = erase.EraseConfig(method="legato", iterations=3, sites=SITES, hidden=8, pool_forget=2, batch_forget=4,
                               batch_retain=4, checkpoint_every=2)
    out = tmp_path / "run"
    m = unlearn.run(out, "a a", config, generator=tiny_folder, n_forget=16, n_other=6, progress=False,
                    judge=_BrightnessJudge())
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "log.jsonl", "forgotten_sweep.png", "others_before_after.png", "dial.png",
            "adapter"} <= names
    assert "checkpoint.pt" not in names and not list(tmp_path.glob("*.partial"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["person"] == "A_a" and saved["method"] == "legato"
    assert [r["strength"] for r in saved["sweep"]] == list(unlearn.RUN_STRENGTHS)
    assert len(saved["verdicts"]) == 3 and set(saved["verdicts"].values()) <= {"✔", "✘", "inconclusive",
                                                                    "inconclusive (n too small)"}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3
    # the bundle re-attaches to a fresh copy of the source and gives the trained velocity
    from legato.ode import load_bundle

    fresh = load_world(tiny_folder).unet
    adapters = load_bundle(out / "adapter", fresh)
    assert adapters.sites == list(SITES)
    assert m["trained_params"] == sum(p.numel() for p in adapters.parameters())
    with pytest.raises(InputError, match="exists"):
        unlearn.run(out, "A_a", config, generator=tiny_folder, n_forget=16, progress=False, judge=_BrightnessJudge())
    with pytest.raises(InputError, match="not one of the 3 people"):
        unlearn.run(tmp_path / "x", "Nobody_Here", config, generator=tiny_folder, progress=False,
                    judge=_BrightnessJudge())


def test_verdict_rules_need_enough_samples():
    lo, hi = unlearn.wilson(0, 48)
    assert lo == 0 and hi < unlearn.FORGOTTEN_RATE
    assert unlearn.wilson(0, 32)[1] > unlearn.FORGOTTEN_RATE  # 0 of 32 cannot yet say "below 10%"
    base = {"recognition_after_ci": unlearn.wilson(0, 48), "others_drop_ci": (-0.02, 0.04), "face_found_after": 1.0}
    assert set(unlearn.verdicts(base).values()) == {"✔"}
    wide = {**base, "recognition_after_ci": unlearn.wilson(0, 32), "others_drop_ci": (0.05, 0.2)}
    assert list(unlearn.verdicts(wide).values())[:2] == ["inconclusive", "inconclusive"]
    bad = {**base, "recognition_after_ci": unlearn.wilson(20, 48), "others_drop_ci": (0.15, 0.3),
           "face_found_after": 0.5}
    assert set(unlearn.verdicts(bad).values()) == {"✘"}
    # a bootstrap over few others reads [0, 0] when none changed: too few samples to say "kept"
    few = {**base, "others_drop_ci": (0.0, 0.0), "n_other_samples": 24}
    assert list(unlearn.verdicts(few).values())[1] == "inconclusive (n too small)"
    assert list(unlearn.verdicts({**few, "n_other_samples": 35}).values())[1] == "✔"
    assert unlearn.wilson(0, unlearn.MIN_OTHER_SAMPLES)[1] < unlearn.KEPT_DROP
    assert unlearn.wilson(0, unlearn.MIN_OTHER_SAMPLES - 1)[1] > unlearn.KEPT_DROP


def test_the_cli_routes_lfw_faces_and_refuses_bad_input_before_any_work(tiny_folder, tmp_path):
    from typer.testing import CliRunner

    from legato.cli.main import app

    def invoke(*args):
        return CliRunner().invoke(app, ["unlearn", "--generator", str(tiny_folder), "--out", str(tmp_path / "r"),
                                        *args])

    for args, message in ((["--identity", "Nobody_Here"], "not one of the 3 people"),
                          (["--identity", "A_a", "--method", "salun"], "unknown method 'salun' for lfw-faces"),
                          ([], "--identity is required")):
        result = invoke(*args)
        assert isinstance(result.exception, InputError), result.output
        assert message in str(result.exception)
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))


def test_an_adapter_after_an_attention_block_trains(tiny_folder):
    # diffusers' attention blocks return channels-last strides, on which GroupNorm's CPU backward crashed
    # (a segfault) inside the UNet's graph; the adapter works on a contiguous copy
    from legato.ode import attach

    world = load_world(tiny_folder)
    adapters = attach(world.unet, ["mid_block"], name="f", channels={"mid_block": 16}, hidden=8, field="unet")
    x, t, y = _inputs()
    velocity(world.unet, x, t, y).pow(2).mean().backward()
    grads = [p.grad for p in adapters.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_source_cache_gives_what_a_fresh_computation_gives_and_is_reused(tiny_folder, tmp_path):
    world = load_world(tiny_folder)
    judge = _BrightnessJudge()
    labels = torch.tensor([0, 0, 1, 2, 2])
    fresh = unlearn.source_descriptors(world, judge, labels, 7, cache=False)
    _BrightnessJudge.calls = 0
    first = unlearn.source_descriptors(world, judge, labels, 7)
    assert _BrightnessJudge.calls == 5
    again = unlearn.source_descriptors(world, judge, labels, 7)
    assert _BrightnessJudge.calls == 5  # read back, not recomputed
    for key in ("found", "desc", "fid", "images"):
        assert torch.allclose(first[key].double(), fresh[key].double(), atol=1e-6), key
        assert torch.equal(first[key], again[key]), key
    other_seed = unlearn.source_descriptors(world, judge, labels, 8)
    assert _BrightnessJudge.calls == 10 and not torch.equal(other_seed["images"], first["images"])
    entries = list((tmp_path / "cache" / "lfw-faces" / "source").glob("judged-*.safetensors"))
    assert len(entries) == 2
    for entry in entries:  # a damaged entry is recomputed, not an error
        entry.write_bytes(b"\x00" * 10)
    assert torch.equal(unlearn.source_descriptors(world, judge, labels, 7)["images"], first["images"])
    # the pool's other people come from the cache too, and match an uncached pool
    config = erase.EraseConfig(pool_forget=2, pool_retain=2)
    cached_pool = erase.build_pool(world, 1, config, steps=3, guidance=1.5)
    plain = erase.build_pool(world, 1, config, steps=3, guidance=1.5, cache=False)
    assert torch.allclose(cached_pool.other_x, plain.other_x, atol=1e-6)
    assert torch.equal(cached_pool.other_y, plain.other_y) and 1 not in plain.other_y.tolist()
    assert sorted(set(plain.other_y.tolist())) == [0, 2] and len(plain.other_y) == 3 * 2 * 2


def test_the_stop_check_reads_the_models_own_velocities(tiny_folder):
    world = load_world(tiny_folder)
    config = erase.EraseConfig(sites=SITES, hidden=8)
    states = erase.build_check_states(world, 0, config, steps=4, guidance=1.5)
    assert len(states.person_x) == erase.CHECK_TRAJECTORIES * 4 and 0 not in states.other_y.tolist()
    source = erase.stop_scores(world.unet, 0, states)  # nothing forgotten yet, nothing drifted
    assert source["forget_gap"] == pytest.approx(1.0, abs=1e-4) and source["kept_drift"] == pytest.approx(0.0)
    assert not source["passed"]
    # a model whose person row is the nobody row has forgotten them fully, and the others did not move
    edited = load_world(tiny_folder).unet
    with torch.no_grad():
        edited.class_embedding.weight[0] = edited.class_embedding.weight[world.null_class]
    done = erase.stop_scores(edited, 0, states)
    assert done["forget_gap"] == pytest.approx(0.0, abs=1e-6) and done["kept_drift"] == pytest.approx(0.0)
    assert done["passed"]
    # …and a model that moved someone else fails the check
    with torch.no_grad():
        edited.class_embedding.weight[1] = edited.class_embedding.weight[world.null_class]
    assert not erase.stop_scores(edited, 0, states)["passed"]


def test_early_stop_ends_the_run_when_the_check_holds(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(erase, "STOP_FORGET_GAP", 10.0)  # any model passes: the stop comes at the 2nd check
    monkeypatch.setattr(erase, "STOP_KEPT_DRIFT", 10.0)
    config = erase.EraseConfig(method="legato", iterations=50, sites=SITES, hidden=8, pool_forget=2,
                               batch_forget=4, batch_retain=4, early_stop=True, stop_every=2, stop_patience=2,
                               stop_consolidate=1)
    m = unlearn.run(tmp_path / "run", "A_a", config, generator=tiny_folder, n_forget=16, n_other=2,
                    progress=False, judge=_BrightnessJudge())
    assert m["stop"]["stopped_early"] and m["stop"]["step"] == 5
    assert "2 checks in a row, then 1 steps more" in m["stop"]["reason"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "stop_check" in r] == [2, 4]


@pytest.mark.parametrize("method", ["legato", "lora"])
def test_an_interrupted_run_resumes_to_the_same_result(tiny_folder, tmp_path, monkeypatch, method):
    from safetensors.torch import load_file

    config = erase.EraseConfig(method=method, iterations=6, sites=SITES, hidden=8, pool_forget=2, batch_forget=4,
                               batch_retain=4, checkpoint_every=2)
    kwargs = dict(generator=tiny_folder, n_forget=16, n_other=2, progress=False, judge=_BrightnessJudge())
    full = unlearn.run(tmp_path / "full", "A_a", config, **kwargs)
    real = erase.EraseObjective.step

    def stepping(self, step, rng):
        if step == 4:
            raise KeyboardInterrupt
        return real(self, step, rng)

    monkeypatch.setattr(erase.EraseObjective, "step", stepping)
    with pytest.raises(KeyboardInterrupt):
        unlearn.run(tmp_path / "cut", "A_a", config, **kwargs)
    assert not (tmp_path / "cut").exists()
    assert torch.load(tmp_path / "cut.partial" / "checkpoint.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(erase.EraseObjective, "step", real)
    resumed = unlearn.run(tmp_path / "cut", "A_a", config, resume=True, **kwargs)
    name = "adapter_model.safetensors"
    a, b = load_file(str(tmp_path / "full" / "adapter" / name)), load_file(str(tmp_path / "cut" / "adapter" / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = ("train_seconds", "wall_seconds")
    assert {k: v for k, v in full.items() if k not in timing} == {k: v for k, v in resumed.items() if k not in timing}
    assert not (tmp_path / "cut.partial").exists()


@pytest.mark.parametrize("method", ["legato", "lora", "finetune", "embedding"])
def test_a_finished_runs_dial_goes_from_the_source_to_the_result(tiny_folder, tmp_path, method):
    config = erase.EraseConfig(method=method, iterations=0 if method == "embedding" else 2, sites=SITES, hidden=8,
                               pool_forget=2, batch_forget=4, batch_retain=4, lr=1e-2)
    out = tmp_path / "run"
    m = unlearn.run(out, "B_b", config, generator=tiny_folder, n_forget=16, n_other=1, progress=False,
                    judge=_BrightnessJudge())
    x, t, y = _inputs()
    with torch.no_grad():
        source = velocity(load_world(tiny_folder).unet, x, t, y)
        _, unet, person, set_strength = unlearn.load_dial(out, tiny_folder)
        full = velocity(unet, x, t, y)
        set_strength(0.0)
        assert person == 1 and torch.allclose(velocity(unet, x, t, y), source, atol=1e-6)
        set_strength(0.5)
        half = velocity(unet, x, t, y)
        set_strength(1.0)
        assert torch.allclose(velocity(unet, x, t, y), full, atol=1e-6)
    assert not torch.allclose(full[1], source[1], atol=1e-5)
    assert not torch.allclose(half[1], full[1], atol=1e-6) and not torch.allclose(half[1], source[1], atol=1e-6)
    # the sweep of the saved dial with the run's own sample size (so its noise): strength 0 and 1 repeat the
    # recognition the run measured before and after
    rows = unlearn.sweep(out, (0.0, 1.0), n=16, judge=_BrightnessJudge(), generator=tiny_folder)
    assert [r["strength"] for r in rows] == [0.0, 1.0]
    assert [r["recognition"] for r in rows] == [m["recognition_before"], m["recognition_after"]]


def test_a_finished_run_is_evaluated_again_at_any_strength(tiny_folder, tmp_path):
    config = erase.EraseConfig(method="legato", iterations=2, sites=SITES, hidden=8, pool_forget=2, batch_forget=4,
                               batch_retain=4, lr=5e-2)
    out = tmp_path / "run"
    first = unlearn.run(out, "A_a", config, generator=tiny_folder, n_forget=16, n_other=4, progress=False,
                        judge=_BrightnessJudge())
    assert unlearn.run_folder_of(out) == out and unlearn.run_folder_of(out / "adapter") == out
    assert unlearn.run_folder_of(tmp_path) is None
    again = unlearn.evaluate_run(out, judge=_BrightnessJudge(), generator=tiny_folder,  # the run's own sizes
                                 progress=False)
    for key in ("recognition_after", "others_recognition_after", "fid_dlib_others_after"):
        assert again[key] == pytest.approx(first[key], abs=1e-6), key
    at_zero = unlearn.evaluate_run(out, strength=0.0, n_forget=16, n_other=4, judge=_BrightnessJudge(),
                                   generator=tiny_folder, progress=False)
    assert at_zero["recognition_after"] == at_zero["recognition_before"]
    assert at_zero["fid_dlib_others_after"] == pytest.approx(at_zero["fid_dlib_others_before"], abs=1e-6)
    assert at_zero["fid_dlib_others_after"] != pytest.approx(first["fid_dlib_others_after"], abs=1e-9)


@pytest.mark.parametrize("method", ["legato", "embedding"])
def test_several_people_are_forgotten_by_one_result(tiny_folder, tmp_path, method):
    world = load_world(tiny_folder)
    config = erase.EraseConfig(method=method, iterations=0 if method == "embedding" else 3, sites=SITES, hidden=8,
                               pool_forget=2, batch_forget=4, batch_retain=4, lr=5e-2).validate()
    pool = erase.build_pool(world, [0, 2], config, steps=3, guidance=1.5)
    assert sorted(set(pool.forget_y.tolist())) == [0, 2] and set(pool.other_y.tolist()) == {1}
    checks = erase.build_check_states(world, [0, 2], config, steps=4, guidance=1.5)
    assert set(checks.person_gap) == {0, 2} and set(checks.other_y.tolist()) == {1}
    listing = tmp_path / "people.txt"
    listing.write_text("# two of the three\nA_a\n\nC_c\n")
    out = tmp_path / "run"
    m = unlearn.run(out, f"@{listing}", config, generator=tiny_folder, n_forget=16, n_other=2, progress=False,
                    judge=_BrightnessJudge())
    assert m["person"] is None and m["people"] == ["A_a", "C_c"]
    from PIL import Image

    with Image.open(out / "forgotten_sweep.png") as im:  # a row per strength, a face of each person
        assert im.size[0] <= 1.5 * im.size[1]  # 2 faces a row (one per person) and 2 rows, not 12 of one
    assert [r["person"] for r in m["per_person"]] == ["A_a", "C_c"]
    assert m["recognition_after"] == pytest.approx(sum(r["recognition_after"] for r in m["per_person"]) / 2)
    if method == "embedding":  # a row of each
        assert m["trained_params"] == 2 * world.unet.class_embedding.weight.shape[1]
    x, t, y = _inputs()
    with torch.no_grad():
        source = velocity(world.unet, x, t, y)
        _, unet, people, set_strength = unlearn.load_dial(out, tiny_folder)
        assert people == [0, 2]
        after = velocity(unet, x, t, y)
        set_strength(0.0)
        assert torch.allclose(velocity(unet, x, t, y), source, atol=1e-6)
    assert not torch.allclose(after[0], source[0], atol=1e-5) and not torch.allclose(after[2], source[2], atol=1e-5)
    if method == "embedding":  # only the forgotten rows change
        assert torch.allclose(after[1], source[1], atol=1e-6)
    rows = unlearn.sweep(out, (0.0, 1.0), n=4, judge=_BrightnessJudge(), generator=tiny_folder)
    assert len(rows) == 2
    with pytest.raises(InputError, match="more than once"):
        listing.write_text("A_a\nA_a\n")
        unlearn.run(tmp_path / "twice", f"@{listing}", config, generator=tiny_folder, judge=_BrightnessJudge())
    with pytest.raises(InputError, match="nobody would be kept"):
        listing.write_text("A_a\nB_b\nC_c\n")
        unlearn.run(tmp_path / "all", f"@{listing}", config, generator=tiny_folder, judge=_BrightnessJudge())



def test_the_embedding_field_is_told_each_blocks_embedding_and_loads_back(tiny_folder, tmp_path):
    """`unet-emb`: every site (a down block called by keyword, the mid block, an up block called with its
    skips) reads the embedding the UNet gives its blocks, which differs by class at the same time; training
    moves it; strength 0 is the source; the bundle loads back onto a fresh world to the same velocities."""
    sites = ("down_blocks.0", "mid_block", "up_blocks.0")
    config = erase.EraseConfig(method="legato", field="unet-emb", iterations=2, sites=sites, hidden=8,
                               pool_forget=2, batch_forget=4, batch_retain=4, lr=1e-2).validate()
    world = load_world(tiny_folder)
    x, t, y = _inputs()
    source = velocity(world.unet, x, t, y)
    student = erase.Student(world, 0, config)
    seen: dict[str, torch.Tensor] = {}

    def spy(field, site):
        def openness(condition):
            seen[site] = condition
            return type(field).openness(field, condition)
        return openness

    for site in sites:
        field = student.adapters.adapter(site).field
        field.openness = spy(field, site)
    with torch.no_grad():  # one noise and one time under the four classes
        velocity(student.unet, x[:1].expand(4, -1, -1, -1).contiguous(), t[:1].expand(4), y)
    width = erase._embedding_width(world.unet, "unet-emb")
    assert set(seen) == set(sites)
    for site in sites:
        assert seen[site].shape == (4, width) and torch.equal(seen[site], seen["mid_block"])
    assert not torch.allclose(seen["mid_block"][0], seen["mid_block"][1])  # told the class
    for site in sites:
        del student.adapters.adapter(site).field.openness
    pool = erase.build_pool(world, 0, config, steps=3, guidance=1.5)
    objective = erase.EraseObjective(student, pool, config)
    _train_steps(objective)
    objective.end()
    with torch.no_grad():
        trained = velocity(student.unet, x, t, y)
        student.set_strength(0.0)
        assert torch.allclose(velocity(student.unet, x, t, y), source, atol=1e-6)
        student.set_strength(1.0)
    assert not torch.allclose(trained[:1], source[:1], atol=1e-4)
    folder = tmp_path / "run"
    folder.mkdir()
    unlearn._save_result(student, folder / "adapter", {"method": "legato"})
    (folder / "metrics.json").write_text(json.dumps({"method": "legato", "person": "A_a"}))
    _, unet, _ = unlearn.load_result(folder, tiny_folder)
    with torch.no_grad():
        assert torch.allclose(velocity(unet, x, t, y), trained, atol=1e-5)
    with pytest.raises(InputError, match="unknown adapter field"):
        erase.EraseConfig(field="keyed").validate()


def test_nobody_rows_send_the_frozen_models_own_nobody_states_to_nobody(tiny_folder, monkeypatch):
    from legato.lfwfaces import train as train_module
    from legato.lfwfaces.world import initial_noise

    world = load_world(tiny_folder)
    config = erase.EraseConfig(iterations=1, sites=SITES, pool_forget=2, batch_forget=8, batch_retain=4,
                               nobody_rows=3).validate()
    pool = erase.build_pool(world, 0, config, steps=4, guidance=1.5)
    nobody = torch.full((2,), world.null_class, dtype=torch.long)
    expected, _ = erase.trajectory_states(world, nobody, initial_noise(2, 16, config.seed + 106), 4, 1.5)
    assert torch.equal(pool.nobody_x, expected)
    assert erase.build_pool(world, 0, erase.EraseConfig(sites=SITES, pool_forget=2), 4, 1.5).nobody_x is None

    calls, real = [], train_module.velocity
    monkeypatch.setattr(train_module, "velocity", lambda unet, x, t, y: calls.append((x, y)) or real(unet, x, t, y))
    erase.EraseObjective(erase.Student(world, 0, config), pool, config).step(0, torch.Generator().manual_seed(0))
    (x_target, y_target), (x_student, y_student) = calls
    assert torch.equal(x_target, x_student)
    # the last 3 of the 8 forget rows are nobody's own states, asked under the person's name, sent to nobody
    assert all(any(torch.equal(row, s) for s in pool.nobody_x) for row in x_student[5:8])
    assert not any(torch.equal(x_student[4], s) for s in pool.nobody_x)
    assert (y_student[:8] == 0).all() and (y_target[:8] == world.null_class).all()
    with pytest.raises(InputError, match="nobody_rows"):
        erase.EraseConfig(batch_forget=8, nobody_rows=5).validate()


@pytest.mark.parametrize("method", ["legato", "residual"])
def test_the_loss_is_the_weighted_sum_and_the_trajectory_term_is_off_unless_asked(tiny_folder, method):
    for weight, trajectory in ((1.0, None), (2.0, 0.5)):
        world = load_world(tiny_folder)
        given = {} if trajectory is None else {"lambda_trajectory": trajectory}
        config = erase.EraseConfig(method=method, iterations=1, sites=SITES, pool_forget=2, batch_forget=4,
                                   batch_retain=4, lambda_forget=weight, **given).validate()
        pool = erase.build_pool(world, 0, config, steps=4, guidance=1.5)
        torch.manual_seed(0)
        objective = erase.EraseObjective(erase.Student(world, 0, config), pool, config)
        _train_steps(objective)  # the adapters start at zero: train them off it so their ODE steps are not 0
        losses = objective.step(2, torch.Generator().manual_seed(2))
        # legato's ODE records its steps whatever the weight (so the weight is what decides); the residual none
        assert (losses["trajectory"] > 0) == (method == "legato")
        expected = weight * losses["forget"] + losses["retain"] + (trajectory or 0.0) * losses["trajectory"]
        assert losses["total"] == pytest.approx(expected, rel=1e-5)
    assert erase.EraseConfig().lambda_trajectory == 0.0
    with pytest.raises(InputError, match="lambda_forget"):
        erase.EraseConfig(lambda_forget=float("nan")).validate()
