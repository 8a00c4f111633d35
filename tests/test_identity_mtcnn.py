"""MTCNN crops for the judge: weight files, the box maths, the crop geometry, the fixed-crop fallback.

Random weights find no real faces, so detection is tested by its pieces and by injected detections; the
agreement with the reference code on real photos is measured by hand (docs/eg3d.md).
"""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _evaluation_tiny import TinyGenerator, TinyIdentity
from legato.cli.main import main
from legato.errors import CheckpointError, InputError
from legato.evaluation.metrics import evaluate, random_ws
from legato.identity.align import ARCFACE_TEMPLATE_112, align_ffhq, similarity_transform
from legato.identity.cropped import MTCNNCropped, load_judge_crop, with_judge_crop
from legato.identity.mtcnn import (
    MTCNN,
    FaceDetection,
    MTCNNConfig,
    calibrate,
    mtcnn_crops,
    nms,
    pyramid_scales,
    square,
    template_transform,
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_npy(path, arrays, protocol=2, module="numpy.core.multiarray"):
    """A .npy holding a pickled dict name → array, as the reference's weights are (NumPy 1, protocol 2:
    `numpy.core.multiarray._reconstruct`, array bytes through `_codecs.encode`)."""
    holder = np.empty((), dtype=object)
    holder[()] = arrays
    payload = pickle.dumps(holder, protocol=protocol)
    if protocol == 2:  # NumPy 2 names its own module numpy._core; the reference's files say numpy.core
        payload = payload.replace(b"numpy._core.multiarray\n", f"{module}\n".encode())
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    return payload


def _write_weights(folder, model, **kw):
    folder.mkdir(exist_ok=True)
    for name in ("pnet", "rnet", "onet"):
        arrays = {k: v.numpy().copy() for k, v in getattr(model, name).state_dict().items()}
        _write_npy(folder / f"{name}.npy", arrays, **kw)
    return folder


@pytest.mark.parametrize("protocol, module", [(2, "numpy.core.multiarray"), (2, "numpy._core.multiarray"), (4, "")])
def test_weights_in_the_reference_format_load_and_give_the_same_outputs(tmp_path, protocol, module):
    model = MTCNN.random(seed=3)
    folder = _write_weights(tmp_path / "w", model, protocol=protocol, module=module)
    if protocol == 2:  # the format of the reference's files, not just any pickle
        raw = (folder / "pnet.npy").read_bytes()
        assert b"_codecs\nencode" in raw and f"{module}\n_reconstruct".encode() in raw
    loaded = MTCNN.from_dir(folder)
    gen = torch.Generator().manual_seed(0)
    for name, size in (("pnet", 40), ("rnet", 24), ("onet", 48)):
        x = torch.randn(2, 3, size, size, generator=gen)
        for a, b in zip(getattr(model, name)(x), getattr(loaded, name)(x), strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(MTCNN.random(seed=4).onet(x)[2], model.onet(x)[2])  # the seed matters


def test_a_weight_file_that_asks_to_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    arrays = {"features.conv1.weight": np.zeros((10, 3, 3, 3), np.float32), "trap": Payload()}
    folder = tmp_path / "w"
    _write_weights(folder, MTCNN.random(0))
    _write_npy(folder / "pnet.npy", arrays)
    assert b"system" in (folder / "pnet.npy").read_bytes()
    with pytest.raises(CheckpointError, match=r"refused.*system"):
        MTCNN.from_dir(folder)
    assert not marker.exists()


@pytest.mark.parametrize("damage, error, message", [
    ("no folder", InputError, "no such folder"),
    ("no rnet", InputError, "has no rnet.npy"),
    ("truncated", CheckpointError, "not a readable"),
    ("plain array", CheckpointError, "not a pickled dict"),
    ("wrong shape", CheckpointError, "wrong shape"),
    ("missing name", CheckpointError, "missing"),
])
def test_bad_weight_folders_give_one_line_errors(tmp_path, damage, error, message):
    model = MTCNN.random(0)
    folder = _write_weights(tmp_path / "w", model)
    onet = {k: v.numpy() for k, v in model.onet.state_dict().items()}
    if damage == "no folder":
        folder = tmp_path / "nope"
    elif damage == "no rnet":
        (folder / "rnet.npy").unlink()
    elif damage == "truncated":
        raw = (folder / "onet.npy").read_bytes()
        (folder / "onet.npy").write_bytes(raw[: len(raw) // 2])
    elif damage == "plain array":
        np.save(folder / "onet.npy", np.zeros(3))
    elif damage == "wrong shape":
        _write_npy(folder / "onet.npy", {**onet, "conv6_3.weight": np.zeros((8, 256), np.float32)})
    else:
        _write_npy(folder / "onet.npy", {k: v for k, v in onet.items() if k != "conv6_3.bias"})
    with pytest.raises(error, match=message) as info:
        MTCNN.from_dir(folder)
    assert len(str(info.value).splitlines()) == 1


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29], [2, 2, 5, 5]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # boxes 0 and 1 overlap by 81 / 119 = 0.68 of their union; box 3 lies inside box 0 (16 / 100)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [0, 2]  # box 3 is all inside box 0
    assert nms(boxes[[3, 0]], np.array([0.95, 0.9]), 0.7, mode="min").tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_box_calibration_and_squaring():
    box = np.array([[10.0, 20.0, 29.0, 59.0]])  # 20 wide, 40 tall (pixel indices, both ends inside)
    moved = calibrate(box, np.array([[0.1, -0.05, 0.2, 0.5]]))
    assert moved.tolist() == [[12.0, 18.0, 33.0, 79.0]]
    assert square(box).tolist() == [[0.0, 20.0, 39.0, 59.0]]  # 40 × 40 around the same centre
    assert square(np.array([[0.0, 0.0, 9.0, 3.0]])).tolist() == [[0.0, -3.0, 9.0, 6.0]]


def test_pyramid_scales():
    # 512²: a 20-pixel face becomes 12 pixels at 0.6; ten levels keep the short side above 12 (the last
    # is 512·0.6·0.707⁹ = 13.5 pixels; the next would be 9.5)
    scales = pyramid_scales(512, 512, min_face_size=20)
    assert scales == pytest.approx([0.6 * 0.707**k for k in range(10)])
    # the shorter side counts: 300·0.3 = 90 pixels, then 90·0.707⁵ = 15.9 is the last level above 12
    assert len(pyramid_scales(512, 300, min_face_size=40)) == 6
    assert pyramid_scales(15, 600, min_face_size=20) == []  # the short side is below 20 pixels


def _no_faces(model):
    """Random weights that never call anything a face (O-Net's 'face' logit far below its 'no face')."""
    with torch.no_grad():
        model.onet.conv6_1.bias.copy_(torch.tensor([50.0, -50.0]))
    return model


def test_detect_on_blank_and_noise_images():
    rng = np.random.default_rng(0)
    blank = np.zeros((96, 96, 3), np.uint8)
    assert _no_faces(MTCNN.random(0)).detect(blank) == []
    # no candidates at all: P-Net's face probability taken over its two classes, 'no face' far ahead
    quiet = MTCNN.random(0, MTCNNConfig(pnet_softmax="classes"))
    with torch.no_grad():
        quiet.pnet.conv4_1.bias.copy_(torch.tensor([50.0, -50.0]))
    assert quiet.detect(blank) == []
    assert MTCNN.random(0).detect(np.zeros((10, 10, 3), np.uint8)) == []  # smaller than the smallest face
    # every stage passes everything: the whole pipeline runs and returns faces best first
    eager = MTCNN.random(0, MTCNNConfig(min_face_size=12, thresholds=(0.0, 0.0, 0.0)))
    faces = eager.detect(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    assert faces and all(isinstance(f, FaceDetection) and f.landmarks.shape == (5, 2) for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    with pytest.raises(InputError, match="uint8"):
        eager.detect(np.zeros((48, 48, 3), np.float32))


class Crops112:
    """An ArcFace-like judge: 112² template crops → 16 numbers."""

    name, threshold, dim, crop_size = "crops-112", 0.3, 16, 112

    def embed_crops(self, crops):
        return F.avg_pool2d(crops, 28).flatten(1)[:, :16]

    def embed(self, images):
        return self.embed_crops(align_ffhq(images))


def _template_face(scale, shift):
    """A detection whose landmarks are the ArcFace template scaled and shifted (pixel indices)."""
    points = scale * ARCFACE_TEMPLATE_112 + np.asarray(shift)  # continuous coordinates
    return FaceDetection(box=(0.0, 0.0, 1.0, 1.0), score=1.0, landmarks=(points - 0.5).astype(np.float32))


@pytest.mark.parametrize("scale", [1, 4])
def test_the_crop_puts_a_marker_where_the_template_says(monkeypatch, scale):
    detector = MTCNN.random(0)
    # crop pixel (row 71, column 56) holds the template's nose tip; with the face `scale` times the
    # template's size, shifted by (20, 10), it covers image rows 71·scale + 10 …, columns 56·scale + 20 …
    images = -torch.ones(1, 3, 512, 512)
    row, col = 71 * scale + 10, 56 * scale + 20
    images[..., row:row + scale, col:col + scale] = 1.0
    other = _template_face(1.0, (100, 100))  # a second, worse face: the first one is used
    monkeypatch.setattr(detector, "detect", lambda rgb: [_template_face(scale, (20, 10)), other])
    crops, found = mtcnn_crops(images, detector)
    assert found.tolist() == [True] and crops.shape == (1, 3, 112, 112)
    # one whole pixel: pixel indices + 0.5 (scale 1) and no antialiasing (scale 4), as the reference
    bright = (crops[0] > -1).any(0).nonzero().tolist()
    assert bright == [[71, 56]] and crops[0, :, 71, 56].tolist() == [1.0, 1.0, 1.0]
    # outside the image the crop is black, as the reference's warp makes it
    white = torch.ones(1, 3, 512, 512)
    monkeypatch.setattr(detector, "detect", lambda rgb: [_template_face(scale, (-40, -30))])
    crops, _ = mtcnn_crops(white, detector)
    assert crops[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0] and crops[0, :, 100, 100].tolist() == [1.0, 1.0, 1.0]


def test_the_transform_is_fitted_in_the_image_as_the_reference_fits_it():
    rng = np.random.default_rng(1)
    for _ in range(5):
        landmarks = 3.0 * ARCFACE_TEMPLATE_112 + 40 + rng.normal(0, 4, (5, 2))  # a real face is never exact
        to_crop = template_transform(landmarks)
        to_image = np.linalg.inv(np.vstack([to_crop, [0, 0, 1]]))[:2]
        in_image = ARCFACE_TEMPLATE_112 @ to_image[:, :2].T + to_image[:, 2]
        forward = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)  # least squares in the crop instead
        forward_inv = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
        in_image_fwd = ARCFACE_TEMPLATE_112 @ forward_inv[:, :2].T + forward_inv[:, 2]
        # the template mapped into the image is as close to the landmarks as a similarity can take it
        assert ((in_image - landmarks) ** 2).sum() < ((in_image_fwd - landmarks) ** 2).sum() - 1e-6


def test_images_without_a_face_get_the_fixed_crop_and_are_counted(monkeypatch):
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    detector = MTCNN.random(0)
    calls = iter([[], [_template_face(1.0, (8, 8))], []])
    monkeypatch.setattr(detector, "detect", lambda rgb: next(calls))
    crops, found = mtcnn_crops(images, detector)
    assert found.tolist() == [False, True, False]
    assert torch.equal(crops[[0, 2]], align_ffhq(images[[0, 2]]))
    assert not torch.allclose(crops[1], align_ffhq(images[[1]])[0], atol=0.1)

    judge = MTCNNCropped(Crops112(), _no_faces(MTCNN.random(0)))
    out = judge.embed(images)
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=1), torch.ones(3))
    assert (judge.images, judge.fallbacks) == (3, 3) and judge.name == "crops-112" and not judge.differentiable


def test_metrics_record_the_judge_crop_and_its_fallbacks():
    gen = TinyGenerator()
    target = random_ws(gen, 1, 101)
    args = dict(n_views=2, n_random=2, n_fid=0, progress=False)
    plain = evaluate(gen, gen, target, identity_model=TinyIdentity(), **args)
    assert plain["judge_crop"] == "fixed" and "judge_crop_fallbacks" not in plain

    judge = with_judge_crop(Crops112(), MTCNN.random(0))
    judge.images, judge.fallbacks = 5, 5  # earlier calls (training checks) are not this evaluation's
    m = evaluate(gen, gen, target, identity_model=judge, **args)
    # 8×8 images are smaller than MTCNN's smallest face: all (1 + 2 latents) × 2 views × 2 generators fall back
    assert m["judge_crop"] == "mtcnn" and m["judge_crop_images"] == 12 and m["judge_crop_fallbacks"] == 12
    assert m["id_target"] == pytest.approx(1.0, abs=1e-5)


def test_an_unlearning_run_judges_on_mtcnn_crops(tmp_path, monkeypatch):
    from legato.identity.registry import REGISTRY
    from legato.unlearning.config import UnlearnConfig
    from legato.unlearning.run import unlearn

    monkeypatch.setitem(REGISTRY, "crops112", lambda arg: Crops112())
    weights = _write_weights(tmp_path / "w", MTCNN.random(0))
    config = UnlearnConfig(iterations=2, lr=1e-3, hidden=8, eval_every=2, seed=3)
    metrics = unlearn("toy", "seed:5", tmp_path / "run", config, judge_model="crops112",
                      judge_crop=f"mtcnn:{weights}", n_random=2, n_fid=0, progress=False, report=False)
    # the toy's 16² images are too small for MTCNN: every judged image falls back to the fixed crop
    assert metrics["judge_crop"] == "mtcnn" and metrics["identity_model"] == "crops-112"
    assert metrics["judge_crop_images"] == metrics["judge_crop_fallbacks"] > 0
    assert metrics["loss_identity_model"] != "crops-112"  # the loss keeps its own model and crop


def test_judge_crop_specs(tmp_path):
    assert load_judge_crop(None) is None and load_judge_crop("fixed") is None
    for spec, message in (("mtcnn", "mtcnn:DIR"), ("dlib:x", "unknown"), (f"mtcnn:{tmp_path}/no", "no such folder")):
        with pytest.raises(InputError, match=message):
            load_judge_crop(spec)
    assert isinstance(load_judge_crop(f"mtcnn:{_write_weights(tmp_path / 'w', MTCNN.random(0))}"), MTCNN)
    with pytest.raises(InputError, match="ArcFace-family"):
        with_judge_crop(TinyIdentity(), MTCNN.random(0))
    with pytest.raises(InputError, match="identity model"):
        with_judge_crop(None, MTCNN.random(0))


@pytest.mark.parametrize("command", [
    ["evaluate", "-g", "toy", "--adapter", "{tmp}/run", "--out", "{tmp}/m.json"],
    ["unlearn", "-g", "toy", "--identity", "seed:1", "--out", "{tmp}/run", "--iters", "1"],
])
def test_a_bad_judge_crop_fails_on_one_line(tmp_path, capsys, command):
    args = [a.format(tmp=tmp_path) for a in command] + ["--judge-crop", f"mtcnn:{tmp_path}/nope"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such folder" in err
    assert not (tmp_path / "run").exists()
