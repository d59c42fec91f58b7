"""Run, report, train and reproduce stage results cross module boundaries as frozen dataclasses: ``from_json(to_json(r)) == r``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from casceq.run.runner import InputFailureGroup
from casceq.stages.report import ReportConfig, ReportSummary, report
from casceq.stages.reproduce import ReproduceResult
from casceq.stages.run import RunResult
from casceq.stages.train import EvaluateResult, TrainResult
from casceq.train.evaluate import AccuracyGap, AccuracyRow
from tests.test_report_fixture import make_run

RUN = RunResult(
    Path("runs/x"),
    {"A": 3, "B": 0},
    {"A": 1},
    {"B": "RuntimeError: boom"},
    (InputFailureGroup("A", "sst2", "clean", 2, 10, ("a.wav: empty", "b.wav: unreadable")),),
    12.5,
    (Path("runs/x/report/report.md"),),
)


def test_run_result_round_trips() -> None:
    back = RunResult.from_json(RUN.to_json())
    assert back == RUN
    assert back.input_failures[0].errors == ("a.wav: empty", "b.wav: unreadable")
    assert dataclasses.replace(RUN, seconds=1.0) != back  # equality sees the fields


def test_run_result_leaves_the_statistics_out_of_its_json() -> None:
    data = json.loads(RUN.to_json())
    assert "compare" not in data and data["failed"] == {"B": "RuntimeError: boom"}


def test_train_and_evaluate_results_round_trip() -> None:
    assert TrainResult.from_json(TrainResult(Path("out/model")).to_json()) == TrainResult(Path("out/model"))
    ev = EvaluateResult(
        RUN,
        (AccuracyRow("Speech-LLM", "sst2", 120, 90, 0.75, 0.66, 0.82, {"positive": 70, "negative": 50}),),
        (AccuracyGap("Speech-LLM", "Cascade-S", "sst2", 120, -0.05, -0.12, 0.02),),
    )
    assert EvaluateResult.from_json(ev.to_json()) == ev


def test_reproduce_result_round_trips() -> None:
    r = ReproduceResult(
        Path("runs/r"),
        {
            "behavioural": {"status": "done", "seconds": 3.0, "detail": "1 rows"},
            "report": {"status": "failed"},
        },
        Path("runs/r/findings.md"),
    )
    back = ReproduceResult.from_json(r.to_json())
    assert back == r and back.failed == ["report"]
    assert ReproduceResult.from_json(ReproduceResult(Path("x")).to_json()).findings is None


@pytest.mark.parametrize("formats", [("md",), ("md", "tex")])
def test_report_stage_summary_round_trips_and_names_its_files(
    tmp_path: Path, formats: tuple[str, ...]
) -> None:
    fx = make_run(tmp_path / "run")
    summary = report(ReportConfig((fx.root,), formats=formats))
    expected = {"report.md"} | ({"tables.tex"} if "tex" in formats else set())
    assert {f.name for f in summary.files} == expected
    assert summary.reversals  # the fixture holds one ranking reversal under noise
    back = ReportSummary.from_json(summary.to_json())
    assert back == summary and back.report is None
