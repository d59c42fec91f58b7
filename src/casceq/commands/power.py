"""Power before compute: the items each claim of ``casceq reproduce`` needs for 80% power, and their wall time.

For each claim: the items (voices, conditions) at which its reference effect would be detected with 80% power,
and the wall time that n costs on this machine.

Without ``--from`` the per-item variances are those of the committed full run and the costs the measured
constants of ``casceq.reproduce.plan``; ``--from DIR`` (a finished ``casceq reproduce`` folder) reads both from
that run: its findings page's minimum detectable effects and its ``timings.json``.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``casceq power``."""
    p.add_argument(
        "--from", dest="source", metavar="DIR", help="a finished reproduction: measured variances and costs"
    )
    p.add_argument("--n", type=int, help="items per text task of the plan to judge (default 50)")
    p.add_argument("--n-ravdess", type=int, help="RAVDESS clips of the plan (default 100)")
    p.add_argument("--mech-n", type=int, help="mechanistic items of the plan (default 40)")


def table(plan: object, source: str | None) -> str:
    """The power table of ``plan``, with variances and costs from ``source`` when given."""
    from pathlib import Path

    from casceq.reproduce.plan import Costs, measured_costs
    from casceq.reproduce.powerplan import format_table, from_findings, power_table

    costs, measured = Costs(), None
    if source:
        folder = Path(source)
        if (folder / "timings.json").is_file():
            costs = measured_costs(folder)
        if (folder / "findings.json").is_file():
            measured = from_findings(folder / "findings.json")
    return format_table(power_table(plan, costs, measured), plan, costs)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    from casceq.reproduce.plan import default_plan

    plan = default_plan(args.n, args.n_ravdess, mech_n=args.mech_n)
    print(table(plan, args.source))
    return 0
