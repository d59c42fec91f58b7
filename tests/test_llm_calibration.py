"""Calibration: offsets equal contextual calibration's formula, fixed bias is removed (positive control)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import log_softmax, softmax

from casceq.systems.llm.calibration import (
    CONTENT_FREE,
    CalibrationFitter,
    Calibrator,
    content_free_prompts,
    fit_calibrator,
)
from casceq.tasks import get_task
from casceq.types import Example

scores_st = arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(2, 6)), elements=st.floats(-30, 0))


@given(scores_st)
@settings(max_examples=60, deadline=None)
def test_offsets_are_log_mean_probability_centred(scores: np.ndarray) -> None:
    cal = CalibrationFitter([f"l{i}" for i in range(scores.shape[1])]).update(scores).calibrator
    ref = np.log(softmax(scores, axis=1).mean(axis=0))
    np.testing.assert_allclose(cal.offsets, ref - ref.mean(), atol=1e-9)


@given(scores_st, scores_st)
@settings(max_examples=60, deadline=None)
def test_prediction_equals_zhao_diagonal_rescaling(fit: np.ndarray, test: np.ndarray) -> None:
    # Zhao et al. 2021: q = W p with W = diag(p_cf)^-1, p_cf the mean probability on the fitting inputs.
    c = min(fit.shape[1], test.shape[1])
    fit, test = fit[:, :c], test[:, :c]
    cal = CalibrationFitter([str(i) for i in range(c)]).update(fit).calibrator
    q = softmax(test, axis=1) / softmax(fit, axis=1).mean(axis=0)
    got = cal(test)
    np.testing.assert_allclose(
        got - got.max(1, keepdims=True), np.log(q / q.max(1, keepdims=True)), atol=1e-6
    )


def test_update_accumulates_like_one_batch() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    two = CalibrationFitter("xyz").update(a).update(b).calibrator
    one = CalibrationFitter("xyz").update(np.vstack([a, b])).calibrator
    np.testing.assert_allclose(two.offsets, one.offsets)
    assert two.n == 12


def test_removes_a_constant_label_bias_positive_control() -> None:
    rng = np.random.default_rng(1)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        gold = rng.integers(0, 3, n)
        s = rng.normal(size=(n, 3))
        s[np.arange(n), gold] += 2.0
        s[:, 0] += 4.0  # the model's prior bias towards label 0
        return log_softmax(s, axis=1), gold

    held, _ = sample(300)
    test, gold = sample(300)
    before = (test.argmax(1) == gold).mean()
    cal = CalibrationFitter(["a", "b", "c"]).update(held).calibrator
    after = (cal(test).argmax(1) == gold).mean()
    assert before < 0.45  # biased: mostly "a"
    assert after > 0.7
    assert cal.predict(test[:2]) == [["a", "b", "c"][i] for i in cal(test[:2]).argmax(1)]


def test_identity_and_shape_errors() -> None:
    ident = Calibrator.identity(["a", "b"])
    s = np.array([[-1.0, -2.0], [-3.0, -0.5]])
    np.testing.assert_allclose(ident(s), log_softmax(s, axis=1))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        ident(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        CalibrationFitter(["a", "b"]).update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="no scores"):
        _ = CalibrationFitter(["a"]).calibrator
    assert ident.to_dict() == {"labels": ["a", "b"], "offsets": [0.0, 0.0], "method": "none", "n": 0}


def test_content_free_prompts_keep_choices_for_multiple_choice() -> None:
    sst2, csqa = get_task("sst2"), get_task("csqa")
    plain = content_free_prompts(sst2)
    assert len(plain) == len(CONTENT_FREE) and all(p.startswith(sst2.instruction) for p in plain)
    assert "Text: N/A\n" in plain[0]
    ex = Example("q1", "csqa", "Where?", "A", ("park", "zoo", "bank", "moon", "sea"))
    mc = content_free_prompts(csqa, [ex, ex])
    assert len(mc) == 2 * len(CONTENT_FREE) and all("E. sea" in p for p in mc)


class _RecordingLLM:
    """A deterministic scorer for fit_calibrator's plumbing: score = -len(option) - 0.1 * len(prompt)."""

    backbone = "rec"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score_options(self, prompts: list[str], options: list[list[str]], **kw: object) -> np.ndarray:
        self.seen += prompts
        return np.array(
            [[-len(o) - 0.1 * len(p) for o in opts] for p, opts in zip(prompts, options, strict=True)]
        )

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        return [""] * len(prompts)


def test_fit_calibrator_methods() -> None:
    task = get_task("sst2")
    llm = _RecordingLLM()
    cf = fit_calibrator(llm, task, "content_free")
    assert cf.method == "content_free" and cf.n == 3 and len(llm.seen) == 3
    # "negative" (8 letters) always scores below "positive"? equal length: zero offsets.
    np.testing.assert_allclose(cf.offsets, 0.0, atol=1e-12)
    held = [Example(f"h{i}", "sst2", f"text {i}", "positive") for i in range(4)]
    ho = fit_calibrator(llm, task, "heldout", heldout=held)
    assert ho.n == 4 and all(f"Text: text {i}" in p for i, p in enumerate(llm.seen[3:]))
    assert fit_calibrator(llm, task, "none").n == 0
    with pytest.raises(ValueError, match="held-out"):
        fit_calibrator(llm, task, "heldout")


def test_heldout_examples_avoid_evaluated_items_and_shots() -> None:
    from casceq.paths import datasets_dir
    from casceq.systems.llm.calibration import heldout_examples
    from casceq.systems.llm.prompting import few_shot_examples
    from casceq.tasks import load_examples

    if datasets_dir() is None:
        pytest.skip("../shared/datasets not found")
    task = get_task("sst2")
    evaluated = load_examples("sst2", n=200, seed=1)
    ids = {ex.id for ex in evaluated}
    shots = few_shot_examples(task, ids, 4, seed=1)
    held = heldout_examples(task, ids, 50, seed=1, shots=shots)
    assert len(held) == 50
    assert not ids & {ex.id for ex in held}
    assert not {p for p, _ in shots} & {task.prompt(ex.text, ex) for ex in held}
    # Positive control: without the shots argument the shots (end of the same ranking) would be included.
    assert {p for p, _ in shots} & {
        task.prompt(ex.text, ex) for ex in heldout_examples(task, ids, 50, seed=1)
    }
