"""Reproduce the paper's experiment at this machine's scale, offline, and judge each of its claims.

Stages (each resumable with --resume): the behavioural run (Cascade-S, Cascade-W, a mismatched cascade, the
bundled speech LLM and the text ceiling on AG News, SST-2, CommonsenseQA and RAVDESS, clean and in babble at 15,
10, 5 and 0 dB), the mechanistic suite (captures of the speech LLM and the Whisper control, probes, logit lens,
implicit cascade, LEACE erasure; --skip-mech leaves it out), the full report, and DIR/findings.md: every claim
with our numbers and a verdict, for each subject: the shipped CTC speech LLM (text by construction), the
continuous-interface model (the paper's case), the acoustic control (uses the voice by construction) and Cascade-W
as a speech-LLM stand-in (a cascade by definition), in a subjects x claims table beside the outcome expected where
one is known. Only the offline plan exists for now, so --offline is required.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``casceq reproduce``."""
    p.add_argument("--offline", action="store_true", help="bundled weights only (required for now)")
    p.add_argument("--out", default="runs/reproduce", help="output folder (default: runs/reproduce)")
    p.add_argument(
        "--n", type=int, help="items per text-sufficient task, each spoken by 2 voices (default 50)"
    )
    p.add_argument("--n-ravdess", type=int, help="RAVDESS clips (default 100)")
    p.add_argument(
        "--n-task",
        nargs="+",
        metavar="TASK=N",
        help="the size of single tasks, e.g. ag_news=199 (the most AG News items the shipped speech LLMs were not "
        "trained on; more are refused as leakage, docs/reproduce.md)",
    )
    p.add_argument("--resume", action="store_true", help="continue a reproduction in --out")
    p.add_argument(
        "--rejudge",
        action="store_true",
        help="rewrite findings.md/.json of the finished reproduction in --out from its stored results (no model runs)",
    )
    p.add_argument("--skip-mech", action="store_true", help="leave out the mechanistic suite")
    p.add_argument(
        "--subjects",
        nargs="+",
        metavar="NAME",
        help="subjects judged (default: ctc, continuous, acoustic-control, cascade-w): ctc (always first), "
        "continuous, acoustic-control, listener, cascade-w",
    )
    p.add_argument("--limit-minutes", type=float, help="start no new stage after this many minutes")
    p.add_argument(
        "--dry-run", action="store_true", help="write plan and experiment.toml, print the estimate, stop"
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--accept-code-change",
        action="store_true",
        help="resume a folder whose rows were computed by another version of casceq's inference code (the "
        "findings page records it); refused without this flag",
    )
    p.add_argument(
        "--pack",
        metavar="FILE",
        help="write the state of the reproduction in --out to FILE (.tar.gz: plan, config, calibration, store, "
        "results; no audio or captures, which are recomputed) and stop: resume it on another machine with --unpack",
    )
    p.add_argument(
        "--unpack",
        metavar="FILE",
        help="extract a --pack archive into a new or empty --out and stop; then run the same command with --resume",
    )
    # development flags (small end-to-end checks), not part of the documented interface
    p.add_argument("--conditions", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--tasks", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--mech-n", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Plan, run every stage, print the verdicts."""
    import sys
    from pathlib import Path

    from casceq.reproduce.plan import (
        check_offline,
        default_plan,
        estimate_minutes,
        experiment_toml,
        offline_subjects,
    )

    if args.pack or args.unpack:
        return _pack_or_unpack(args)
    if not args.offline:
        print(
            "casceq reproduce: only the offline plan (bundled weights) exists for now: pass --offline.\n"
            "To compare your own models, write an experiment config and use `casceq run` "
            "(see docs/reproduce.md for the config this command writes).",
            file=sys.stderr,
        )
        return 2
    plan = default_plan(
        args.n,
        args.n_ravdess,
        conditions=args.conditions,
        tasks=args.tasks,
        mech=not args.skip_mech,
        mech_n=args.mech_n,
        subjects=offline_subjects(args.subjects) if args.subjects else None,
        n_task=_task_sizes(args.n_task),
    )
    check_offline(plan.models, plan.all_subjects)
    out = Path(args.out)
    if args.rejudge:
        return _rejudge(out)
    from casceq.reproduce.plan import Costs, measured_costs

    costs = (
        measured_costs(out) if (out / "timings.json").is_file() and (out / "plan.json").is_file() else Costs()
    )
    est = estimate_minutes(plan, costs)
    sizes = ", ".join(f"{t} {plan.clips(t)} clips" for t in plan.tasks)
    print(
        f"reproduce: {sizes} x {len(plan.conditions)} conditions; mechanistic n {plan.mech_n if plan.mech else 0}; "
        f"estimated {est['total']:.0f} min from the costs of {costs.source} "
        f"(behavioural {est['behavioural']:.0f}, mechanistic {est['mechanistic']:.0f})"
    )
    if args.dry_run:
        from casceq.reproduce.powerplan import plan_table

        out.mkdir(parents=True, exist_ok=True)
        (out / "experiment.toml").write_text(experiment_toml(plan))
        print(plan_table(plan, str(out)))
        print(f"wrote {out / 'experiment.toml'}")
        return 0
    from casceq.reproduce.findings import FINDINGS_JSON
    from casceq.reproduce.pipeline import run_pipeline

    argv = (
        ["casceq", "reproduce", *sys.argv[2:]] if len(sys.argv) > 1 else ["casceq", "reproduce", "--offline"]
    )
    result = run_pipeline(
        plan,
        out,
        argv=argv,
        resume=args.resume,
        limit_minutes=args.limit_minutes,
        show_progress=not args.no_progress,
        accept_code_change=args.accept_code_change,
    )
    import json

    findings = json.loads((out / FINDINGS_JSON).read_text())
    for claim in findings["claims"]:
        print(f"({claim['key']}) {claim['title']}: {claim['verdict']} — {claim['reason']}")
    for row in findings.get("subjects", ()):
        cells = [
            f"({k}) {c['verdict']}"
            + (f" [expected {c['expected']}: {c['agreement']}]" if c["expected"] else "")
            for k, c in row["claims"].items()
        ]
        print(f"{row['name']}: " + "; ".join(cells))
    print(f"\nfindings: {result.findings}  report: {out / 'report' / 'report.html'}")
    return 1 if result.failed else 0


def _rejudge(out: object) -> int:
    """Judge the claims again from a finished folder's stored results and rewrite the findings page."""
    import sys
    from pathlib import Path

    from casceq.reproduce.pipeline import rejudge

    path, claims = rejudge(Path(str(out)), ["casceq", "reproduce", *sys.argv[2:]])
    for c in claims:
        print(f"({c.key}) {c.title}: {c.verdict} — {c.reason}")
    print(f"\nfindings: {path}")
    return 0


def _pack_or_unpack(args: argparse.Namespace) -> int:
    """``--pack FILE``: archive the state of --out; ``--unpack FILE``: extract one into a new --out."""
    import sys
    from pathlib import Path

    from casceq.reproduce.state import pack, read_segments, store_rows, unpack

    out = Path(args.out)
    if args.pack and args.unpack:
        print("casceq reproduce: give --pack or --unpack, not both", file=sys.stderr)
        return 2
    if args.pack:
        info = pack(out, Path(args.pack))
        size = Path(args.pack).stat().st_size
        print(
            f"packed {info['files']} files of {out} ({store_rows(out)[0]} prediction rows, "
            f"{len(read_segments(out))} starts) into {args.pack} ({size / 1e6:.1f} MB)"
        )
        return 0
    written = unpack(Path(args.unpack), out)
    print(
        f"unpacked {written} files into {out} ({store_rows(out)[0]} prediction rows); continue with the "
        f"reproduction's own command and --resume --out {out}"
    )
    return 0


def _task_sizes(pairs: list[str] | None) -> dict[str, int] | None:
    """``["ag_news=200", ...]`` as ``{"ag_news": 200}``.

    Raises:
        InputError: A pair that is not TASK=N with a positive integer N, or a task given twice.
    """
    from casceq.errors import InputError

    if not pairs:
        return None
    sizes: dict[str, int] = {}
    for pair in pairs:
        task, sep, n = pair.partition("=")
        if not sep or not task or not n.strip().isdigit() or int(n) <= 0:
            raise InputError(f"--n-task takes TASK=N with a positive integer N, not {pair!r}")
        if task in sizes:
            raise InputError(f"--n-task gives {task} twice")
        sizes[task] = int(n)
    return sizes
