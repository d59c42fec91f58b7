"""The behavioural comparison on a console: the tables ``casceq compare`` and ``casceq demo`` print.

Rich tables of a ``CompareResult`` (accuracy with INVALID shares, each pair's kappa, overlap and McNemar, the
backbone confound, the notes), and the system kinds recorded in stores (what ``compare`` declares for them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from casceq.io.interchange import is_store
from casceq.io.store import Store
from casceq.stats.compare import KINDS
from casceq.stats.results import CompareResult

BH_TEXT = {
    "call": "over all pairs, tasks and conditions",
    "speech_vs_cascade": "per task and condition over the speech LLMs' tests against cascades (other pairs apart)",
}
"""How the printed legend names each ``--bh-family``."""


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


def _ci(ci: Any, digits: int = 3) -> str:
    return "" if ci is None else f" [{_f(ci[0], digits)}, {_f(ci[1], digits)}]"


def _p(x: float) -> str:
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def print_tables(result: CompareResult, console: Any, bh_family: str = "call") -> None:
    """Print the accuracy, pair and backbone-confound tables and the notes of ``result`` on a rich ``console``.

    Every name (system, task, condition) is text, never rich markup. ``bh_family`` names the q-values' family
    in the legend (``BH_TEXT``).
    """
    from rich.markup import escape as e
    from rich.table import Table

    invalid = {(r.system, r.task, r.condition): r for r in result.invalid}
    acc = Table(
        title="Accuracy [Wilson 95% CI, item-aware] and share of INVALID answers", title_justify="left"
    )
    for col in ("system", "task", "condition", "items / clips", "accuracy [95% CI]", "INVALID"):
        acc.add_column(col, justify="left" if col in ("system", "task", "condition") else "right")
    for r in result.accuracy:
        inv = invalid[(r.system, r.task, r.condition)]
        acc.add_row(
            e(r.system), e(r.task), e(r.condition), f"{r.n_items} / {r.n_clips}", _f(r.accuracy) + _ci(r.ci),
            f"{inv.share:.1%}",
        )  # fmt: skip
    console.print(acc)
    boot = f"{result.n_bootstrap} resamples, seed {result.seed}" if result.n_bootstrap else "no bootstrap"
    groups: dict[tuple[str, str], list[Any]] = {}
    for pair in result.pairs:
        groups.setdefault((pair.task, pair.condition), []).append(pair)
    if groups:
        console.print(
            f"\nPairs: kappa of predicted labels [95% percentile bootstrap CI over items, {boot}]; overlap = "
            "same wrong / both wrong (vs chance 1/(C-1)); a+b- / a-b+ = discordant clips; McNemar p clustered "
            f"by item (exact McNemar with one clip per item); BH q {BH_TEXT[bh_family]}. "
            "Every interval and test treats the item as the unit (docs/statistics.md).",
            highlight=False,
        )
    for (task, condition), rows in groups.items():
        where = f"{task} / {condition} ({rows[0].n_items} items, {rows[0].n_clips} clips)"
        table = Table(title=e(where), title_justify="left")
        for col in (
            "a",
            "b",
            "kappa [95% CI]",
            "overlap",
            "chance",
            "ratio",
            "a+b- / a-b+",
            "p",
            "q",
            "matched",
        ):
            table.add_column(col, justify="left" if col in ("a", "b") else "right")
        for r in rows:
            table.add_row(
                e(r.a), e(r.b), _f(r.kappa) + _ci(r.kappa_ci), f"{_f(r.overlap)} ({r.same_wrong}/{r.both_wrong})",
                _f(r.overlap_chance), _f(r.overlap_ratio, 2), f"{r.a_right_b_wrong} / {r.a_wrong_b_right}",
                _p(r.mcnemar_p), _p(r.q_value), "yes" if r.matched else "",
            )  # fmt: skip
        console.print(table)
    if result.backbone_confound:
        conf = Table(
            title="Backbone confound: Δκ = κ(speech LLM, matched cascade) − κ(speech LLM, mismatched cascade)",
            title_justify="left",
        )
        for col in ("speech LLM", "task", "condition", "matched", "mismatched", "κ matched", "κ mismatched"):
            conf.add_column(col)
        conf.add_column("Δκ [95% CI]", justify="right")
        for c in result.backbone_confound:
            conf.add_row(
                e(c.speech_llm), e(c.task), e(c.condition), e(c.matched), e(c.mismatched), _f(c.kappa_matched),
                _f(c.kappa_mismatched), _f(c.delta_kappa) + _ci(c.delta_ci),
            )  # fmt: skip
        console.print(conf)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


def stored_kinds(files: list[str], run: str | None, systems: list[str]) -> dict[str, str]:
    """Kinds recorded with ``systems`` in the stores among ``files`` (``import --kind``, run configs).

    A registered system without predictions (one that failed in a run) is left out.

    ``report`` reads them too, so both commands see the same kinds; ``--kind`` on the command line wins.
    """
    out: dict[str, str] = {}
    for f in map(Path, files):
        if is_store(f):
            with Store(f, read_only=True) as store:
                for s in store.systems(run):
                    if (
                        s.kind in KINDS and s.name in systems
                    ):  # kind 'imported' (interchange) declares nothing
                        out.setdefault(s.name, s.kind)
    return out
