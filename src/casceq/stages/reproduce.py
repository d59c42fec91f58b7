"""The stages a reproduction shares with the rest of casceq, on shared results: its behavioural run and its report.

``casceq.reproduce.pipeline`` composes them with the mechanistic stages and the findings: the behavioural
run's ``compare()`` statistics go on to the report (and the report's to the findings), so a reproduction
computes the statistics of its run folder once and builds one report (``DIR/report``, with the mechanistic
results), not a second one inside the run folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from casceq.run.build import clear_shared
from casceq.run.config import ExperimentConfig
from casceq.stages.report import ReportConfig, ReportSummary, report
from casceq.stages.run import RunConfig, RunResult, run
from casceq.stats.results import CompareResult


@dataclass(frozen=True)
class BehaviourConfig:
    """The behavioural run of a reproduction: its experiment, its run folder, progress bars."""

    experiment: ExperimentConfig
    run_dir: Path
    show_progress: bool = True


def behavioural(config: BehaviourConfig) -> RunResult:
    """Run (or resume) the experiment without its own full report; free its models afterwards.

    Raises:
        RuntimeError: A system failed (named, with its error; the pipeline records the stage as failed).
    """
    try:
        result = run(
            RunConfig(
                config.experiment, config.run_dir, show_progress=config.show_progress, full_report=False
            )
        )
    finally:
        clear_shared()  # the mechanistic stages load their own copies; free ~2 GB
    if result.failed:
        raise RuntimeError("systems failed: " + "; ".join(f"{k}: {v}" for k, v in result.failed.items()))
    return result


@dataclass(frozen=True)
class FullReportConfig:
    """The reproduction's one report: over its run folder and its mechanistic results."""

    run_dir: Path
    out: Path
    mech_dirs: tuple[Path, ...] = ()


def full_report(config: FullReportConfig, compare_result: CompareResult | None = None) -> ReportSummary:
    """Build the report; ``compare_result``: the behavioural run's statistics when this call computed them."""
    return report(
        ReportConfig((config.run_dir,), out=config.out, mech_dirs=config.mech_dirs),
        compare_result=compare_result,
    )


@dataclass
class Shared:
    """Results the stages of one reproduction hand on: the run's and the report's (None until produced)."""

    run: RunResult | None = None
    report: ReportSummary | None = None

    @property
    def compare(self) -> CompareResult | None:
        """The run folder's statistics, from whichever stage computed them (None: not computed yet)."""
        if self.run is not None and self.run.compare is not None:
            return self.run.compare
        if self.report is not None and self.report.report is not None:
            return self.report.report.compare
        return None


@dataclass(frozen=True)
class ReproduceResult:
    """What a reproduction call did: each stage's record (status, seconds, detail) and the findings page.

    Attributes:
        out: The reproduction folder.
        timings: Per stage: ``status`` (done, complete (resumed), skipped, failed), ``seconds``, ``detail``.
        findings: The findings page (``findings.md``), None before it is written.
    """

    out: Path
    timings: dict[str, dict[str, object]] = field(default_factory=dict)
    findings: Path | None = None

    @property
    def failed(self) -> list[str]:
        """Stages that raised."""
        return [k for k, v in self.timings.items() if str(v.get("status", "")).startswith("failed")]

    def to_json(self) -> str:
        """JSON form."""
        findings = None if self.findings is None else str(self.findings)
        return json.dumps({"out": str(self.out), "timings": self.timings, "findings": findings}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ReproduceResult:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(Path(d["out"]), dict(d["timings"]), None if d["findings"] is None else Path(d["findings"]))
