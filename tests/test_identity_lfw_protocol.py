"""The LFW 10-fold protocol: parsing pairs.txt and choosing thresholds on the other folds."""

import numpy as np
import pytest

from legato.errors import InputError
from legato.identity import lfw


def test_read_pairs_parses_matched_then_mismatched_pairs(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nBob\t3\tCid\t1\nDee\t4\t10\nEve\t1\tFay\t12\n")
    folds = lfw.read_pairs(tmp_path / "pairs.txt")
    assert len(folds) == 2 and [len(f) for f in folds] == [2, 2]
    assert folds[0][0] == lfw.Pair("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", True)
    assert folds[0][1] == lfw.Pair("Bob/Bob_0003.jpg", "Cid/Cid_0001.jpg", False)
    assert folds[1][1].b == "Fay/Fay_0012.jpg"


def test_a_truncated_pairs_file_is_a_clear_error(tmp_path):
    (tmp_path / "pairs.txt").write_text("10\t300\nAnn\t1\t2\n")
    with pytest.raises(InputError, match="not an LFW pairs.txt"):
        lfw.read_pairs(tmp_path / "pairs.txt")


def test_best_threshold_separates_separable_scores():
    scores = np.array([0.9, 0.8, 0.75, 0.3, 0.2, 0.1])
    same = np.array([True, True, True, False, False, False])
    t = lfw.best_threshold(scores, same)
    assert 0.3 < t < 0.75 and lfw.accuracy(scores, same, t) == 1.0
    # distances: smaller means same
    t = lfw.best_threshold(1 - scores, same, higher_is_same=False)
    assert lfw.accuracy(1 - scores, same, t, higher_is_same=False) == 1.0


def test_cross_validated_threshold_comes_from_the_other_folds():
    rng = np.random.default_rng(0)
    same = [np.array([True] * 50 + [False] * 50) for _ in range(3)]
    scores = [np.where(y, 0.7, 0.3) + rng.normal(0, 0.05, 100) for y in same]
    scores[2] = scores[2] + 0.3  # this fold is shifted: a threshold fitted on the others misjudges it
    res = lfw.evaluate(scores, same, fixed_threshold=0.5)
    assert res["fixed"].accuracies[0] == pytest.approx(1.0) and res["fixed"].thresholds == [0.5] * 3
    for k in range(3):
        rest = [i for i in range(3) if i != k]
        expected = lfw.best_threshold(
            np.concatenate([scores[i] for i in rest]), np.concatenate([same[i] for i in rest])
        )
        assert res["cross"].thresholds[k] == expected
    assert res["cross"].accuracies[2] < 0.9  # fold 2 never saw its own scores
    assert res["cross"].std > 0 and res["cross"].as_dict()["mean"] == pytest.approx(
        np.mean(res["cross"].accuracies)
    )
