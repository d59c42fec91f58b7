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


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    from casceq.reproduce.plan import default_plan
    from casceq.reproduce.powerplan import plan_table

    print(plan_table(default_plan(args.n, args.n_ravdess, mech_n=args.mech_n), args.source))
    return 0
