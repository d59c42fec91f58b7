"""Report sections of the behavioural comparison: overview, Table 2, Figure 1 with the pair table, Figure 2.

A :class:`Section` is format-independent (paragraphs, tables, figures, warnings); ``casceq.report.build``
renders it to Markdown, LaTeX and HTML. A section whose inputs are missing says what is missing in its
paragraphs instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from casceq.report.analysis import missing
from casceq.report.context import ReportContext
from casceq.report.data import Key, ReportData
from casceq.report.figures import Figure, HeatRow, OverlapBar, kappa_heatmap, overlap_bars
from casceq.report.tables import SMALL_N, Cell, Table, fmt, fmt_ci, small
from casceq.stats.results import Agreement, CompareResult
from casceq.types import CLEAN


@dataclass(frozen=True)
class Section:
    """One part of the report.

    Attributes:
        key: Anchor id.
        title: Heading.
        paragraphs: Text before the tables (findings, or what is missing).
        tables: Tables in order.
        figures: Figures in order.
        warnings: Caveats shown prominently (small n, missing inputs).
    """

    key: str
    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    warnings: tuple[str, ...] = ()


def primary_condition(result: CompareResult) -> str:
    """Return the condition of Table 2 and Figures 1-2: clean when present, else the first one."""
    conds = list(dict.fromkeys(r.condition for r in result.accuracy))
    return CLEAN if CLEAN in conds or not conds else conds[0]


def group_keys(result: CompareResult, task: str, condition: str, systems: Sequence[str]) -> list[Key]:
    """Row keys of ``systems`` on the aligned examples of one task and condition."""
    for g in result.groups:
        if g.task == task and g.condition == condition:
            return [(s, task, condition, e) for s in systems if s in g.systems for e in g.example_ids]
    return []


def pair_label(a: str, b: str) -> str:
    """How a pair is written in tables and figures."""
    return f"{a} – {b}"


def overview(ctx: ReportContext[Any]) -> Section:
    """Describe the inputs: systems with kinds and backbones, what is missing, small-n warnings, compare's notes."""
    data, result = ctx.data, ctx.result
    rows = []
    for s in data.systems:
        n = sum(p.system == s for p in data.predictions)
        rows.append((Cell(s), Cell(data.kinds.get(s, "?")), Cell(data.backbones.get(s) or "–"), Cell(str(n))))
    systems = Table(
        "systems", "Systems in this report", ("system", "kind", "backbone", "prediction rows"), tuple(rows)
    )
    paras = [
        f"Predictions of {len(data.systems)} system(s) on {len(data.tasks)} task(s) "
        f"({', '.join(data.tasks)}) under {len(data.conditions)} condition(s) ({', '.join(data.conditions)}); "
        f"{result.n_bootstrap} bootstrap resamples, seed {result.seed}.",
    ]
    # compare() sees every kind as declared (the report passes them); the loader's note says why each is so.
    notes = (*data.notes, *(n for n in result.notes if not n.startswith("system kinds")))
    paras += [f"Note: {n}" for n in dict.fromkeys(notes)]
    warnings = [f"Missing: {m}." for m in missing(data)]
    tiny = sorted({(r.task, r.condition, r.n_items) for r in result.accuracy if r.n_items < SMALL_N})
    warnings += [
        f"Only n = {n} items on {t} ({c}): intervals are wide; numbers are marked †." for t, c, n in tiny
    ]
    if ctx.no_figures:
        warnings.append(ctx.no_figures)
    return Section("overview", "Overview", tuple(paras), (systems,), (), tuple(warnings))


def accuracy_section(ctx: ReportContext[Any]) -> Section:
    """Table 2: accuracy per system (rows) and task (columns) under the primary condition, Wilson CIs."""
    result, data, book = ctx.result, ctx.data, ctx.book
    cond = primary_condition(result)
    acc = {(r.system, r.task): r for r in result.accuracy if r.condition == cond}
    tasks = [t for t in data.tasks if any(k[1] == t for k in acc)]
    rows = []
    for s in data.systems:
        cells = [Cell(s)]
        for t in tasks:
            r = acc.get((s, t))
            if r is None:
                cells.append(Cell("missing"))
                continue
            ref = book.add(f"accuracy of {s} on {t} ({cond})", group_keys(result, t, cond, [s]))
            cells.append(
                Cell(f"{fmt(r.accuracy)}{fmt_ci(r.ci)} n={_n(r.n_items, r.n)}{small(r.n_items)}", ref)
            )
        rows.append(tuple(cells))
    paras = () if tasks else (f"No accuracy under {cond}: no task has predictions there.",)
    table = Table(
        "table2",
        f"Accuracy per system and task ({cond}), 95% Wilson CI",
        ("system", *tasks),
        tuple(rows),
        ("n = items (/ clips when an item has several). † fewer than 30 items.",)
        if any(r.n_items < SMALL_N for r in acc.values())
        else ("n = items (/ clips when an item has several).",),
    )
    return Section("accuracy", "Table 2: accuracy", paras, (table,) if tasks else ())


def _n(n_items: int, n_clips: int) -> str:
    """``items/clips``, or one number when every item has one clip."""
    return str(n_clips) if n_items == n_clips else f"{n_items}/{n_clips}"


def _heat_rows(pairs: Sequence[Agreement]) -> list[HeatRow]:
    rows: dict[tuple[str, str], dict[str, tuple[float, tuple[float, float] | None, int]]] = {}
    matched = {}
    for p in pairs:
        rows.setdefault((p.a, p.b), {})[p.task] = (p.kappa, p.kappa_ci, p.n)
        matched[(p.a, p.b)] = p.matched

    def mean(cells: dict[str, tuple[float, tuple[float, float] | None, int]]) -> float:
        vals = [k for k, _, _ in cells.values() if math.isfinite(k)]
        return sum(vals) / len(vals) if vals else -math.inf

    ordered = sorted(rows.items(), key=lambda kv: -mean(kv[1]))
    return [HeatRow(pair_label(a, b), matched[(a, b)], cells) for (a, b), cells in ordered]


def no_pairs_reason(data: ReportData, result: CompareResult) -> str | None:
    """Why there are no pairs to compare, or None when there are pairs."""
    if result.pairs:
        return None
    if len(data.systems) < 2:
        return f"Only one system ({', '.join(data.systems)}): there are no pairs to compare."
    return "No two systems share a classification task and condition: there are no pairs to compare."


def agreement_section(ctx: ReportContext[Any]) -> Section:
    """Figure 1 (kappa heatmap of the primary condition) and the full pair table of every condition."""
    result, data, book, draw = ctx.result, ctx.data, ctx.book, ctx.draw
    reason = no_pairs_reason(data, result)
    if reason:
        return Section("agreement", "Figure 1: agreement (Cohen's κ)", (reason,))
    cond = primary_condition(result)
    main = [p for p in result.pairs if p.condition == cond]
    tasks = list(dict.fromkeys(p.task for p in main))
    figs = (kappa_heatmap(_heat_rows(main), tasks, cond),) if draw and main else ()
    rows = []
    for p in result.pairs:
        ref = book.add(
            f"pair {p.a} vs {p.b} on {p.task} ({p.condition})",
            group_keys(result, p.task, p.condition, [p.a, p.b]),
            p.n,
        )
        overlap = "–" if p.overlap is None else f"{fmt(p.overlap, 2)} ({p.same_wrong}/{p.both_wrong})"
        rows.append(
            (
                Cell(p.a),
                Cell(p.b),
                Cell("★" if p.matched else ""),
                Cell(p.task),
                Cell(p.condition),
                Cell(f"{_n(p.n_items, p.n)}{small(p.n_items)}", ref),
                Cell(f"{fmt(p.kappa)}{fmt_ci(p.kappa_ci)}", ref),
                Cell(overlap, ref),
                Cell(fmt(p.overlap_chance, 2)),
                Cell(f"{p.mcnemar_p:.3g}", ref),
                Cell(f"{p.q_value:.3g}", ref),
            )
        )
    table = Table(
        "pairs",
        "Every pair: κ [95% bootstrap CI over items], conditional error overlap (same wrong / both wrong) vs "
        "chance, McNemar p clustered by item and Benjamini–Hochberg q",
        (
            "a",
            "b",
            "matched",
            "task",
            "condition",
            "items / clips",
            "κ",
            "overlap",
            "chance",
            "McNemar p",
            "q",
        ),
        tuple(rows),
        ("★ = same LLM backbone. † fewer than 30 items.",),
    )
    paras = () if main else (f"No pairs under {cond}; the table lists the other conditions.",)
    return Section("agreement", "Figure 1: agreement (Cohen's κ)", paras, (table,), figs)


def overlap_section(ctx: ReportContext[Any]) -> Section:
    """Figure 2: conditional error overlap of each pair on multi-class tasks (chance line 1/(C-1))."""
    result, data, draw = ctx.result, ctx.data, ctx.draw
    reason = no_pairs_reason(data, result)
    title = "Figure 2: conditional error overlap"
    if reason:
        return Section("overlap", title, (reason,))
    cond = primary_condition(result)
    multi = [
        p
        for p in result.pairs
        if p.condition == cond and p.overlap_chance is not None and p.overlap_chance < 1
    ]
    if not multi:
        binary = sorted({p.task for p in result.pairs})
        return Section(
            "overlap",
            title,
            (
                f"No multi-class task under {cond} (tasks: {', '.join(binary)}): with two labels two wrong answers "
                "are always the same, so the overlap says nothing.",
            ),
        )
    groups: dict[str, tuple[float, list[OverlapBar]]] = {}
    for p in multi:
        chance = float(p.overlap_chance or 0.0)
        groups.setdefault(p.task, (chance, []))[1].append(
            OverlapBar(pair_label(p.a, p.b), p.overlap, p.both_wrong, p.matched)
        )
    above = [
        p for p in multi if p.overlap is not None and p.overlap_ratio is not None and p.overlap_ratio > 1
    ]
    paras = [
        f"{len(above)} of {len(multi)} pair(s) on multi-class tasks make the same wrong choice more often than "
        "chance (numbers in the pair table above)."
    ]
    figs = (overlap_bars(groups, cond),) if draw else ()
    return Section("overlap", title, tuple(paras), (), figs)
