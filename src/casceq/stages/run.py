"""The run stage: an experiment config into a run folder, with its statistics and its full report.

``run(RunConfig(...))`` runs (or resumes) the experiment (``casceq.run.runner``: store, predictions.jsonl,
compare.json, report.md) and, when this start rewrote the statistics, builds the full report (``report/``)
from the same ``compare()`` result: one comparison per run folder. ``casceq run``, ``casceq demo``,
``casceq train evaluate`` and ``casceq reproduce`` call it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casceq.io.interchange import read_predictions
from casceq.report.build import build_report
from casceq.run.config import ExperimentConfig, load_run_config
from casceq.run.runner import InputFailureGroup, run_experiment
from casceq.stats.compare import compare
from casceq.stats.results import CompareResult

REPORT_DIR = "report"
"""The full report's folder inside a run folder."""


@dataclass(frozen=True)
class RunConfig:
    """What to run, where, and how.

    Attributes:
        experiment: The experiment (``ExperimentConfig.build`` or ``load_config`` of a TOML file).
        out: The run folder (created, or resumed when it holds the same config).
        limit: At most this many examples per task.
        only_systems: Run only these systems.
        only_tasks: Run only these tasks.
        executor: ``local`` or ``ray``.
        jobs: Parallel synthesis jobs.
        show_progress: Progress bars.
        full_report: Build ``report/`` next to ``report.md`` (a reproduction builds one report of its own).
    """

    experiment: ExperimentConfig
    out: Path
    limit: int | None = None
    only_systems: tuple[str, ...] | None = None
    only_tasks: tuple[str, ...] | None = None
    executor: str = "local"
    jobs: int = 1
    show_progress: bool = True
    full_report: bool = True


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    Attributes:
        run_dir: The run folder.
        written: Rows written per system by this start.
        skipped: Rows already stored per system.
        failed: Error per failed system.
        input_failures: Examples whose input could not be used, per system, task and condition.
        seconds: Wall time of the run and its report.
        report_files: Files of the full report written by this start (none when the outputs were current).
        compare: The statistics this start computed (None when the outputs were current). Not part of the JSON
            form: they are the run folder's ``compare.json``.
    """

    run_dir: Path
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    input_failures: tuple[InputFailureGroup, ...] = ()
    seconds: float = 0.0
    report_files: tuple[Path, ...] = ()
    compare: CompareResult | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        """JSON form (without the in-memory statistics)."""
        d: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "written": self.written,
            "skipped": self.skipped,
            "failed": self.failed,
            "input_failures": [{**asdict(g), "errors": list(g.errors)} for g in self.input_failures],
            "seconds": self.seconds,
            "report_files": [str(f) for f in self.report_files],
        }
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(
            Path(d["run_dir"]),
            dict(d["written"]),
            dict(d["skipped"]),
            dict(d["failed"]),
            tuple(InputFailureGroup(**{**g, "errors": tuple(g["errors"])}) for g in d["input_failures"]),
            float(d["seconds"]),
            tuple(Path(f) for f in d["report_files"]),
        )


def run(config: RunConfig) -> RunResult:
    """Run or resume the experiment into ``config.out``; build the full report when the statistics changed."""
    t0 = time.perf_counter()
    summary = run_experiment(
        config.experiment,
        config.out,
        limit=config.limit,
        only_systems=list(config.only_systems) if config.only_systems is not None else None,
        only_tasks=list(config.only_tasks) if config.only_tasks is not None else None,
        executor=config.executor,
        show_progress=config.show_progress,
        jobs=config.jobs,
    )
    files: tuple[Path, ...] = ()
    if config.full_report and summary.compare is not None:
        files = full_report(config.out, summary.compare)
    return RunResult(
        Path(summary.run_dir),
        dict(summary.written),
        dict(summary.skipped),
        dict(summary.failed),
        tuple(summary.input_failures),
        time.perf_counter() - t0,
        files,
        summary.compare,
    )


def full_report(out: Path, result: CompareResult) -> tuple[Path, ...]:
    """The full report (tables 2-3, figures 1-3, HTML explorer) in ``out/report`` from the run's statistics.

    A failure is printed, not raised: the predictions and statistics are already safe on disk.
    """
    try:
        return build_report([out], out=out / REPORT_DIR, compare_result=result).files
    except Exception as exc:  # the predictions and statistics are already safe on disk
        print(f"full report not written ({type(exc).__name__}: {exc}); run `casceq report {out}`")
        return ()


def run_statistics(run_dir: Path) -> CompareResult:
    """The run folder's statistics recomputed from its predictions as the run computes them (``compare.json``)."""
    cfg = load_run_config(run_dir)
    preds = read_predictions([str(run_dir)])
    present = {p.system for p in preds}
    kinds = {s.name: s.kind for s in cfg.systems if s.name in present}
    return compare(preds, n_bootstrap=cfg.bootstrap, seed=cfg.seed, intersect=True, kinds=kinds)
