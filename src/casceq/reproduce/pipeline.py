"""The stage runner of ``casceq reproduce``: behavioural run, mechanistic suite, report, findings.

Folder layout of ``DIR``::

    plan.json            the plan and its hash (a resumed folder must hold the same plan)
    experiment.toml      the behavioural experiment (``casceq run`` config)
    run/                 the run folder (store, predictions.jsonl, compare.json, report.md)
    mech/captures/<m>-<task>/   capture folders (speech LLM and Whisper control, SST-2 and RAVDESS)
    mech/probes/<m>-<task>/     probes.json, table.md, figure
    mech/lens/           mech/lens.json (+ lens_control.json), mech/lens_all.json (every position of the prompt)
    mech/implicit/       mech/implicit.json
    mech/erasure/        mech/erasure.json
    mech/diagnostic/     mech/erasure.json with the section 5.4 text-decodability diagnostic
    mech-<subject>/      the same for every further speech-LLM subject (the Whisper control only in mech/)
    report/              the full report over the run and the mechanistic results
    findings.md/.json    claims, numbers, verdicts
    timings.json         status and wall seconds per stage
    segments.json        one record per start of the pipeline (commit, machine, rows written, inference code)

A stage whose output is complete is not run again (``--resume``); the behavioural run resumes row by row. A
failing stage is recorded with its error and the stages that do not depend on it still run.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.mech.lens import LENS_ALL_FILE
from casceq.reproduce import mech as mc
from casceq.reproduce.findings import FINDINGS_JSON, judge_subjects, write_findings
from casceq.reproduce.plan import EXPERIMENT_COMMENT, EXPERIMENT_TOML, Plan, experiment_config, plan_from_dict
from casceq.reproduce.rules import Claim
from casceq.reproduce.state import end_segment, read_segments, start_segment
from casceq.stages.context import provenance as base
from casceq.stages.reproduce import (
    BehaviourConfig,
    FullReportConfig,
    ReproduceResult,
    Shared,
    behavioural,
    full_report,
)

PLAN_FILE = "plan.json"
TIMINGS_FILE = "timings.json"


class StageSkipped(Exception):
    """Raised by a stage that has nothing to work on (recorded as skipped, with the message as the reason)."""


@dataclass
class Stage:
    """One stage: a name, a completeness check, the work, and the stages it needs."""

    name: str
    done: Callable[[], bool]
    run: Callable[[], Any]
    needs: tuple[str, ...] = ()


def open_out(out: Path, plan: Plan, resume: bool) -> None:
    """Create ``out`` with ``plan.json``, or check a resumed folder holds the same plan.

    Raises:
        InputError: The folder holds a reproduction and ``--resume`` was not given, or another plan.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / PLAN_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if not resume:
            raise InputError(
                "a reproduction is here: pass --resume to continue it, or another --out", path=str(out)
            )
        if old.get("hash") != plan.hash():
            raise InputError(
                "--resume: this folder holds a reproduction with another plan (n, conditions or models differ)",
                path=str(path),
            )
        return
    path.write_text(json.dumps({"hash": plan.hash(), "plan": plan.to_dict()}, indent=1))


def provenance(argv: list[str]) -> dict[str, Any]:
    """Command line, git commit, machine, CPU count, torch threads, date (the findings header)."""
    meta = base(argv)
    meta["platform"] = platform.platform()
    meta["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return meta


def run_pipeline(
    plan: Plan,
    out: Path,
    *,
    argv: list[str] | None = None,
    resume: bool = False,
    limit_minutes: float | None = None,
    show_progress: bool = True,
    accept_code_change: bool = False,
    log: Callable[[str], None] = print,
) -> ReproduceResult:
    """Run (or resume) every stage of the plan into ``out`` and write the findings page.

    Args:
        plan: The plan (``casceq.reproduce.plan.default_plan``).
        out: Output folder.
        argv: The command line recorded in the findings header.
        resume: Continue a folder that already holds this plan.
        limit_minutes: Start no new stage after this many minutes (the running stage finishes; the report and
            findings are always written).
        show_progress: Progress bars of the behavioural run.
        accept_code_change: Resume a folder whose rows were computed by other inference code (recorded).
        log: Where stage messages go.

    Raises:
        InputError: See ``open_out``; or the folder's rows came from other inference code
            (``casceq.reproduce.state.start_segment``).
    """
    out = Path(out)
    open_out(out, plan, resume)
    meta = provenance(argv or ["casceq", "reproduce"])
    segment = start_segment(out, meta, accept_code_change=accept_code_change)
    # the behavioural experiment as a file for `casceq run`; the stages use the config object, never this file
    (out / EXPERIMENT_TOML).write_text(experiment_config(plan).to_toml(EXPERIMENT_COMMENT))
    timings_path = out / TIMINGS_FILE
    old = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    timings: dict[str, dict[str, Any]] = {}
    shared = Shared()
    t_start = time.perf_counter()
    deadline = None if limit_minutes is None else t_start + 60 * limit_minutes

    def record(name: str, status: str, seconds: float, detail: str = "", **counts: int) -> None:
        timings[name] = {"status": status, "seconds": round(seconds, 1), "detail": detail, **counts}
        timings_path.write_text(json.dumps(timings, indent=1))

    for stage in build_stages(plan, out, meta, show_progress, shared):
        missing = [
            n
            for n in stage.needs
            if not str(timings.get(n, {}).get("status", "")).startswith(("done", "complete"))
        ]
        if missing:
            record(stage.name, "skipped", 0.0, f"needs {', '.join(missing)}")
            continue
        if stage.name not in ("report", "findings") and resume and _safe(stage.done):
            prev = old.get(stage.name, {})
            record(
                stage.name, "complete (resumed)", float(prev.get("seconds", 0.0)), str(prev.get("detail", ""))
            )
            continue
        if (
            deadline is not None
            and time.perf_counter() > deadline
            and stage.name not in ("report", "findings")
        ):
            record(stage.name, "skipped", 0.0, f"--limit-minutes {limit_minutes:g} reached")
            continue
        log(f"reproduce: stage {stage.name} ...")
        t0 = time.perf_counter()
        try:
            detail = stage.run() or ""
        except StageSkipped as why:
            record(stage.name, "skipped", time.perf_counter() - t0, str(why))
            continue
        except Exception as exc:  # one stage's failure must not lose the others' results
            log(f"reproduce: stage {stage.name} FAILED: {type(exc).__name__}: {exc}")
            log("".join(traceback.format_exception(exc)[-3:]))
            record(stage.name, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
            continue
        counts = {}
        if stage.name == "behavioural" and shared.run is not None:
            # a resumed stage's seconds time only the rows this start wrote (plan.measured_costs reads these)
            counts = {
                "rows_written": sum(shared.run.written.values()),
                "rows_done": sum(shared.run.skipped.values()),
            }
        record(stage.name, "done", time.perf_counter() - t0, str(detail), **counts)
        log(f"reproduce: stage {stage.name} done in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    end_segment(out, segment, time.perf_counter() - t_start)
    meta["segments"] = read_segments(out)
    by_subject = judge_subjects(out, plan, timings, compare_result=shared.compare)
    claims = by_subject[plan.all_subjects[0].name]
    record("findings", "done", time.perf_counter() - t0)
    return ReproduceResult(out, timings, write_findings(out, plan, claims, meta, timings, by_subject))


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # an unreadable partial output is simply not complete
        return False


def build_stages(
    plan: Plan, out: Path, meta: dict[str, Any], show_progress: bool, shared: Shared | None = None
) -> list[Stage]:
    """The stages of the plan, in order (mechanistic ones only when ``plan.mech``).

    ``shared`` receives the behavioural run's and the report's results (the statistics are computed once).
    """
    run_dir = out / "run"
    shared = shared if shared is not None else Shared()
    experiment = BehaviourConfig(experiment_config(plan), run_dir, show_progress)
    stages = [Stage("behavioural", lambda: False, partial(_behavioural, experiment, shared))]
    if plan.mech:
        stages += _whisper_stages(plan, out, mc.MechContext(plan, out, run_dir))
        prov = {**meta, "stage": "reproduce"}
        for subject in plan.speech_subjects:
            stages += _subject_stages(mc.MechContext(plan, out, run_dir, subject), prov)
    stages.append(Stage("report", lambda: False, partial(_report, out, shared)))
    return stages


MECH_TASKS = ("sst2", "ravdess")
"""Tasks of the captures and probes."""
SPLIT_BY = {"sst2": "example", "ravdess": "actor"}
"""Probe train/test split unit per task (an item's clips, an actor's clips, never on both sides)."""


def _capture_and_probes(ctx: mc.MechContext, spec: str, mech: Path, prefix: str, short: str) -> list[Stage]:
    """Capture stages of ``spec`` on the plan's capture tasks, then their probes.

    Captures go to ``mech/captures/<prefix>-<task>``, probes to ``mech/probes/<prefix>-<task>``; the stages are
    named ``capture-<short>-<task>`` and ``probes-<short>-<task>``.
    """
    plan, stages = ctx.plan, []
    tasks = [t for t in MECH_TASKS if t in plan.n]
    for task in tasks:
        folder = mech / "captures" / f"{prefix}-{task}"
        stages.append(
            Stage(
                f"capture-{short}-{task}",
                partial(mc.capture_complete, ctx, folder, task),
                partial(mc.capture_stage, ctx, spec, task, folder),
            )
        )
    for task in tasks:
        dest = mech / "probes" / f"{prefix}-{task}"
        stages.append(
            Stage(
                f"probes-{short}-{task}",
                partial(Path.is_file, dest / "probes.json"),
                partial(
                    mc.probe_stage, mech / "captures" / f"{prefix}-{task}", dest, SPLIT_BY[task], plan.seed
                ),
                (f"capture-{short}-{task}",),
            )
        )
    return stages


def _whisper_stages(plan: Plan, out: Path, ctx: mc.MechContext) -> list[Stage]:
    """Captures and probes of the Whisper control (one for all subjects, in ``DIR/mech``)."""
    return _capture_and_probes(ctx, plan.models.whisper_control, out / "mech", "whisper", "whisper")


def _subject_stages(ctx: mc.MechContext, prov: dict[str, Any]) -> list[Stage]:
    """Captures, probes, lens, implicit cascade and erasure of one speech-LLM subject, in its ``mech_dir``.

    Stage names of the first subject are those of a one-subject reproduction (``capture-speech-sst2``, ``lens``,
    ...); another subject's carry its slug (``capture-speech-llm-c-sst2``, ``lens-speech-llm-c``).
    """
    plan, mech = ctx.plan, ctx.mech_dir
    suffix = plan.suffix(ctx.subject)
    short = ctx.subject.slug if suffix else "speech"
    caps = mech / "captures"
    stages = _capture_and_probes(ctx, str(ctx.subject.spec), mech, "speech", short)
    lens, impl, erase = (mech / k for k in ("lens", "implicit", "erasure"))
    if "sst2" in plan.n:
        stages.append(
            Stage(
                f"lens{suffix}",
                lambda: (lens / "mech" / "lens.json").is_file() and (lens / mc.LENS_CONTROL_FILE).is_file(),
                lambda: mc.lens_stage(ctx, caps / "speech-sst2", lens),
                (f"capture-{short}-sst2",),
            )
        )
    stages.append(
        Stage(
            f"implicit{suffix}",
            lambda: (impl / "mech" / "implicit.json").is_file(),
            lambda: mc.implicit_stage(ctx, impl, prov),
        )
    )
    if "sst2" in plan.n:
        stages.append(
            Stage(
                f"erasure{suffix}",
                lambda: (erase / "mech" / "erasure.json").is_file(),
                lambda: mc.erasure_stage(ctx, caps / "speech-sst2", erase, prov),
                (f"capture-{short}-sst2",),
            )
        )
        diag = mech / "diagnostic"
        stages += [
            Stage(
                f"lens-all{suffix}",
                lambda: (lens / LENS_ALL_FILE).is_file(),
                lambda: mc.lens_all_stage(ctx, caps / "speech-sst2", lens),
                (f"capture-{short}-sst2",),
            ),
            Stage(
                f"diagnostic{suffix}",
                lambda: (diag / "mech" / "erasure.json").is_file(),
                lambda: _diagnostic(ctx, caps / "speech-sst2", diag, prov),
                (f"capture-{short}-sst2",),
            ),
        ]
    return stages


def _diagnostic(ctx: mc.MechContext, fit: Path, out: Path, prov: dict[str, Any]) -> None:
    """The section 5.4 diagnostic, skipped (with the reason) when the captures are too small to hold items out."""
    why = mc.diagnostic_unavailable(ctx.plan)
    if why:
        raise StageSkipped(why)
    mc.diagnostic_stage(ctx, fit, out, prov)


def _behavioural(config: BehaviourConfig, shared: Shared) -> str:
    """The ``casceq run`` experiment, resumable (the run stage without a report of its own)."""
    shared.run = behavioural(config)
    return f"{sum(shared.run.written.values())} rows written, {sum(shared.run.skipped.values())} already done"


def _report(out: Path, shared: Shared) -> str:
    """The full report over the run and the mechanistic results, from the run's statistics when computed."""
    if not (out / "run" / "predictions.jsonl").is_file():
        raise StageSkipped("no predictions to report on")
    config = FullReportConfig(out / "run", out / "report", (out / "mech",))
    shared.report = full_report(config, shared.compare)
    return f"{len(shared.report.files)} files"


def rejudge(out: Path, argv: list[str]) -> tuple[Path, list[Claim]]:
    """Judge the claims again from a finished folder's stored results and rewrite the findings page.

    The header keeps the run's machine and command; ``argv`` (the re-judging call) is listed under them with its
    commit (every re-judging call once).

    Raises:
        InputError: ``out`` holds no finished reproduction.
    """
    try:
        plan = plan_from_dict(json.loads((out / PLAN_FILE).read_text())["plan"])
        timings = json.loads((out / TIMINGS_FILE).read_text())
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a finished reproduction ({exc})", path=str(out)) from exc
    old = json.loads((out / FINDINGS_JSON).read_text()) if (out / FINDINGS_JSON).is_file() else {}
    now = provenance(argv)
    meta = {**now, **old.get("meta", {})}  # the run's machine and command; the re-judging calls are listed
    meta["rejudged"] = [
        *meta.get("rejudged", ()),
        {"command": now["command"], "commit": now.get("commit", ""), "date": now.get("date", "")},
    ]
    meta["segments"] = read_segments(out)
    by_subject = judge_subjects(out, plan, timings)
    claims = by_subject[plan.all_subjects[0].name]
    return write_findings(out, plan, claims, meta, timings, by_subject), claims
