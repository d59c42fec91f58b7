"""The findings page as a detector test: every claim judged for each subject, beside the known answers.

Synthetic runs with known truth go through the real ``compare()`` and rules: a subject that reads emotion from the
voice (the acoustic control) must come out "reproduced" on the text-insufficient claim (d), a subject that copies
its matched cascade on the emotion task must not (the negative control), and a cascade stand-in is judged as a
speech LLM would be on a copy of its rows. Each subject's verdicts are checked against a one-subject run built
directly with that subject as ``Speech-LLM`` (an independent route to the same statistics).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from casceq.io.interchange import write_predictions
from casceq.reproduce.findings import (
    AGREES,
    DISAGREES,
    NOT_APPLICABLE,
    NOT_DETECTED,
    UNDECIDED,
    agreement,
    judge,
    judge_subjects,
    subject_predictions,
    write_findings,
)
from casceq.reproduce.plan import (
    NOT_REPRODUCED,
    OFFLINE_SUBJECTS,
    PRIMARY,
    REPRODUCED,
    Models,
    default_plan,
    experiment_config,
    offline_subjects,
    plan_from_dict,
)
from casceq.reproduce.rules import CONTRADICTED, INCONCLUSIVE
from casceq.stats.compare import compare
from casceq.tasks import get_task
from casceq.types import Prediction

BACKBONE = {"Cascade-M": "smollm"}
KINDS = {"Cascade-S": "cascade", "Cascade-W": "cascade", "Cascade-M": "cascade", "Text": "text"}


def _noisy(rng: np.random.Generator, base: list[str], labels: tuple[str, ...], flip: float) -> list[str]:
    out = list(base)
    for i in rng.choice(len(base), int(flip * len(base)), replace=False):
        out[i] = str(rng.choice([x for x in labels if x != base[i]]))
    return out


def _answers(seed: int = 0, n: int = 150) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """{(system, task): (gold, labels)}: Cascade-S 85% on AG News, Cascade-W and the speech subjects noisy copies of
    it, Cascade-M independent. On RAVDESS the cascades answer one label per sentence (words carry no emotion),
    the CTC subject guesses, the acoustic control is 80% right, the continuous one copies Cascade-S."""
    rng = np.random.default_rng(seed)
    out = {}
    txt, rav = get_task("ag_news").labels, get_task("ravdess").labels
    g_txt = [str(x) for x in rng.choice(txt, n)]
    g_rav = [str(x) for x in rng.choice(rav, n)]
    s_txt = _noisy(rng, g_txt, txt, 0.15)
    sentence = rng.integers(0, 2, n)
    s_rav = [("calm", "sad")[k] for k in sentence]
    answers = {
        "Cascade-S": (s_txt, s_rav),
        "Cascade-W": (_noisy(rng, s_txt, txt, 0.10), [("calm", "neutral")[k] for k in sentence]),
        "Cascade-M": (_noisy(rng, g_txt, txt, 0.30), [("happy", "sad")[k] for k in sentence]),
        "Text": (g_txt, s_rav),
        PRIMARY: (_noisy(rng, s_txt, txt, 0.10), [str(x) for x in rng.choice(rav, n)]),
        "Speech-LLM-C": (_noisy(rng, s_txt, txt, 0.10), _noisy(rng, s_rav, rav, 0.05)),
        "Speech-LLM-A": (_noisy(rng, s_txt, txt, 0.10), _noisy(rng, g_rav, rav, 0.20)),
    }
    for system, (a_txt, a_rav) in answers.items():
        out[(system, "ag_news")] = (g_txt, a_txt)
        out[(system, "ravdess")] = (g_rav, a_rav)
    return out


def _rows(
    system: str, task: str, gold: list[str], labels: list[str], name: str | None = None
) -> list[Prediction]:
    backbone = BACKBONE.get(system, "gemma")
    return [
        Prediction(
            name or system,
            task,
            "clean",
            f"{task}-{i}",
            y,
            y,
            g,
            None,
            None,
            0.0,
            backbone,
            y == g,
            f"{task}-{i}",
        )
        for i, (g, y) in enumerate(zip(gold, labels, strict=True))
    ]


def _folder(root: Path, preds: list[Prediction], kinds: dict[str, str]) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    write_predictions(run / "predictions.jsonl", preds)
    present = {p.system for p in preds}
    result = compare(
        preds,
        n_bootstrap=1000,
        seed=0,
        intersect=True,
        kinds={k: v for k, v in kinds.items() if k in present},
    )
    (run / "compare.json").write_text(result.to_json())
    return root


def _plan(subjects=None):  # type: ignore[no-untyped-def]
    return default_plan(
        150, 150, tasks=["ag_news", "ravdess"], conditions=["clean"], mech=False, subjects=subjects
    )


SPEECH_KINDS = {**KINDS, PRIMARY: "speech_llm", "Speech-LLM-C": "speech_llm", "Speech-LLM-A": "speech_llm"}


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    answers = _answers()
    preds = [p for (s, t), (g, y) in answers.items() for p in _rows(s, t, g, y)]
    out = _folder(tmp_path_factory.mktemp("several"), preds, SPEECH_KINDS)
    plan = _plan()
    return judge_subjects(out, plan, {}), answers, out


def _verdicts(claims) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.key: c.verdict for c in claims}


def test_the_detector_tells_the_listener_from_the_cascades(judged) -> None:  # type: ignore[no-untyped-def]
    by_subject, _, _ = judged
    v = {name: _verdicts(claims) for name, claims in by_subject.items()}
    # the acoustic control departs from its cascade on emotion; the continuous copy of the cascade does not
    assert v["Speech-LLM-A"]["d"] == "reproduced"
    assert v["Speech-LLM-C"]["d"] != "reproduced"
    # the CTC subject guesses on RAVDESS: (d) cannot be tested (at chance), never "reproduced"
    assert v[PRIMARY]["d"] == INCONCLUSIVE
    # the stand-in is a cascade sharing Cascade-S's backbone: matched agreement and shared errors
    assert v["Cascade-W"]["b"] == "reproduced" and v["Cascade-W"]["c"] == "reproduced"
    assert v["Cascade-W"]["d"] != "reproduced"
    assert {v["Cascade-W"][k] for k in "fgh"} == {NOT_APPLICABLE}


def test_each_subject_is_judged_as_a_one_subject_run_of_it(judged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    by_subject, answers, _ = judged
    cascades = ("Cascade-S", "Cascade-W", "Cascade-M", "Text")
    for subject in OFFLINE_SUBJECTS:
        source = subject.stand_in or subject.name
        # built directly: the cascades' rows and the subject's answers written as Speech-LLM
        preds = [p for (s, t), (g, y) in answers.items() if s in cascades for p in _rows(s, t, g, y)]
        preds += [
            p for t in ("ag_news", "ravdess") for p in _rows(source, t, *answers[(source, t)], name=PRIMARY)
        ]
        one = _folder(tmp_path / subject.slug, preds, {**KINDS, PRIMARY: "speech_llm"})
        plan = default_plan(
            150,
            150,
            tasks=["ag_news", "ravdess"],
            conditions=["clean"],
            mech=False,
            models=Models(speech_llm="ultravox-native:bundled-copy"),
        )
        expected = judge(one, plan, {})
        got = by_subject[subject.name][:5]
        assert [(c.key, c.verdict, c.tasks) for c in got] == [
            (c.key, c.verdict, c.tasks) for c in expected[:5]
        ]


def test_subject_view_renames_the_subject_and_drops_the_others() -> None:
    answers = _answers(n=10)
    preds = [p for (s, t), (g, y) in answers.items() for p in _rows(s, t, g, y)]
    plan = _plan()
    subjects = {s.name: s for s in plan.all_subjects}
    view = subject_predictions(preds, plan, subjects["Speech-LLM-A"])
    systems = {p.system for p in view}
    assert systems == {"Cascade-S", "Cascade-W", "Cascade-M", "Text", PRIMARY}
    assert [p.label for p in view if p.system == PRIMARY] == [
        p.label for p in preds if p.system == "Speech-LLM-A"
    ]
    stand = subject_predictions(preds, plan, subjects["Cascade-W"])
    copied = [p.label for p in stand if p.system == PRIMARY]
    assert copied == [p.label for p in preds if p.system == "Cascade-W"]
    assert sum(p.system == "Cascade-W" for p in stand) == len(copied)  # the original stays for claim (a)


def test_agreement_truth_table() -> None:
    assert agreement("reproduced", REPRODUCED) == AGREES
    assert agreement(CONTRADICTED, REPRODUCED) == DISAGREES
    assert agreement(INCONCLUSIVE, REPRODUCED) == UNDECIDED
    assert agreement("reproduced", NOT_REPRODUCED) == DISAGREES  # a false detection
    assert agreement(INCONCLUSIVE, NOT_REPRODUCED) == NOT_DETECTED  # no false detection, nothing confirmed
    assert agreement(CONTRADICTED, NOT_REPRODUCED) == AGREES


def test_findings_page_has_the_subjects_table_with_expected_outcomes(judged) -> None:  # type: ignore[no-untyped-def]
    by_subject, _, out = judged
    plan = _plan()
    page = write_findings(out, plan, by_subject[PRIMARY], {"command": "test"}, {}, by_subject).read_text()
    assert "## Subjects x claims" in page
    assert "- source splits: ravdess test" in page and "Cascade-W = stand-in for Cascade-W" in page
    row = next(line for line in page.splitlines() if line.startswith("| **Speech-LLM-A**"))
    assert "expected reproduced ✓" in row  # (d) reproduced for the listener
    data = json.loads((out / "findings.json").read_text())
    cells = {r["name"]: r["claims"] for r in data["subjects"]}
    assert cells["Speech-LLM-A"]["d"]["agreement"] == AGREES
    # a cascade at chance on emotion: (d) cannot be tested, so no false detection and no confirmation
    assert cells["Cascade-W"]["d"]["verdict"] == INCONCLUSIVE
    assert cells["Cascade-W"]["d"]["agreement"] == NOT_DETECTED
    assert "expected not reproduced (✓)" in next(
        line for line in page.splitlines() if line.startswith("| **Cascade-W**")
    )
    assert cells["Speech-LLM-C"]["d"]["expected"] is None
    assert [c["key"] for c in data["claims"]] == [c.key for c in by_subject[PRIMARY]]
    # every subject has its own section
    for subject in plan.all_subjects:
        assert f"## {subject.name}: " in page


def test_a_false_detection_is_shown_as_a_disagreement(tmp_path: Path) -> None:
    """Positive control of the table: a cascade stand-in made to hear emotion is marked ✗ on (d)."""
    answers = _answers(seed=1)
    g_rav = answers[("Cascade-W", "ravdess")][0]
    answers[("Cascade-W", "ravdess")] = (
        g_rav,
        _noisy(np.random.default_rng(5), g_rav, get_task("ravdess").labels, 0.2),
    )
    preds = [p for (s, t), (g, y) in answers.items() for p in _rows(s, t, g, y)]
    out = _folder(tmp_path, preds, SPEECH_KINDS)
    plan = _plan()
    by_subject = judge_subjects(out, plan, {})
    assert _verdicts(by_subject["Cascade-W"])["d"] == "reproduced"
    page = write_findings(out, plan, by_subject[PRIMARY], {}, {}, by_subject).read_text()
    row = next(line for line in page.splitlines() if line.startswith("| **Cascade-W**"))
    assert "expected not reproduced ✗" in row


def test_default_plan_judges_four_subjects_on_held_out_ravdess_actors() -> None:
    plan = default_plan(10, 10)
    assert [s.name for s in plan.all_subjects] == [PRIMARY, "Speech-LLM-C", "Speech-LLM-A", "Cascade-W"]
    assert plan.splits == {"ravdess": "test"}
    cfg = experiment_config(plan)
    speech = {s.name: s.model for s in cfg.systems if s.kind == "speech_llm"}
    assert speech == {
        PRIMARY: "ultravox-native:bundled",
        "Speech-LLM-C": "ultravox-native:continuous",
        "Speech-LLM-A": "ultravox-native:acoustic-control",
    }
    assert {t.name: t.split for t in cfg.tasks}["ravdess"] == "test"
    assert plan_from_dict(json.loads(json.dumps(plan.to_dict()))).hash() == plan.hash()
    # a one-subject plan hashes as before subjects existed: no key for them
    one = default_plan(10, 10, subjects=offline_subjects(["ctc"]))
    assert "subjects" in one.to_dict() and len(one.all_subjects) == 1
    legacy = default_plan(10, 10, models=Models(speech_llm="ultravox-native:bundled-x"))
    assert "subjects" not in legacy.to_dict() and "splits" not in legacy.to_dict()
    with pytest.raises(Exception, match="unknown subject"):
        offline_subjects(["nope"])


def test_offline_names_the_shipped_speech_llms() -> None:
    from casceq.reproduce.plan import SHIPPED_SPEECH_LLMS
    from casceq.systems.speech_llm.shipped import SHIPPED

    assert tuple(SHIPPED) == SHIPPED_SPEECH_LLMS


def test_ravdess_calibration_draws_from_the_evaluated_split() -> None:
    """Offsets of a run on held-out actors are fitted on held-out actors too, never on the acoustic control's
    training actors (positive control: the default split's pool does reach them)."""
    from casceq.paths import datasets_dir
    from casceq.run.calibrate import heldout_examples
    from casceq.run.config import TaskSpec
    from casceq.tasks import load_examples
    from casceq.tasks.speech_loaders import ACTOR_SPLITS

    if datasets_dir() is None:  # pragma: no cover - a user's clone
        pytest.skip("../shared/datasets not found")
    evaluated = load_examples("ravdess", n=20, seed=0, split="test")
    held = heldout_examples("ravdess", evaluated, 64, 0, spec=TaskSpec("ravdess", 20, split="test"))
    assert len(held) == 64 and {ex.meta["actor"] for ex in held} <= set(ACTOR_SPLITS["test"])
    assert not {ex.id for ex in held} & {ex.id for ex in evaluated}
    default = heldout_examples("ravdess", evaluated, 64, 0)
    assert {ex.meta["actor"] for ex in default} & set(ACTOR_SPLITS["train"])
