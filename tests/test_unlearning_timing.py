"""The training clock: `seconds` and `seconds_to_forget` count training, not the evaluations that measure it."""

import time

from _unlearning_toy import train_toy
from legato.unlearning.config import UnlearnConfig

EVAL_SLEEP = 1.0


def _train_toy(tmp_path, iterations: int, eval_every: int, **callbacks):
    config = UnlearnConfig(method="legato", iterations=iterations, lr=1e-2, hidden=8, seed=3, eval_every=eval_every,
                           checkpoint_every=100)
    return train_toy(config, tmp_path, latent_seed=1, threshold=0.5, **callbacks)[1]


def test_quick_score_time_is_not_training_time(tmp_path):
    calls = []

    def slow_scores(unlearned):  # "forgotten" from the second evaluation on
        calls.append(time.perf_counter())
        time.sleep(EVAL_SLEEP)
        return {"id_target": 0.0 if len(calls) >= 2 else 1.0, "id_preservation": 1.0}

    result = _train_toy(tmp_path, iterations=3, eval_every=1, quick_scores=slow_scores)
    assert len(calls) == 3
    assert result.step_to_forget == 2
    # a clock that counted the evaluations would read at least 3 s (2 s at the forgetting); three steps of
    # the toy generator take a small fraction of that
    assert 0 < result.seconds < 3 * EVAL_SLEEP
    assert result.seconds_to_forget is not None and 0 < result.seconds_to_forget < 2 * EVAL_SLEEP
    assert result.seconds_to_forget <= result.seconds


def test_forget_check_runs_every_step_until_forgotten(tmp_path):
    checks = []

    def check(unlearned):  # below the threshold from the third step on
        checks.append(len(checks) + 1)
        time.sleep(EVAL_SLEEP / 4)
        return 0.0 if len(checks) >= 3 else 1.0

    result = _train_toy(tmp_path, iterations=6, eval_every=100, forget_check=check)
    assert checks == [1, 2, 3]  # not called again once forgotten
    assert result.step_to_forget == 3
    assert 0 < result.seconds_to_forget <= result.seconds < 3 * EVAL_SLEEP / 4
