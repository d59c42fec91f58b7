"""Mechanistic sections with behavioural outcomes: Table 6 (implicit cascade), Table 7 / Figure 6 (erasure).

Formats read (``casceq.mech.implicit`` and ``casceq.mech.erasure_concepts``; see ``casceq.report.mech``):
``{"kind": "implicit", "results": [...]}``, each result read by ``ImplicitResult.from_json``, and
``{"kind": "erasure", "accuracy": [...], "probes": [...]}`` read by ``ErasureResult.from_json``.
"""

from __future__ import annotations

import math

from casceq.mech.erasure_concepts import ErasureResult
from casceq.mech.implicit import ImplicitResult
from casceq.report.figures import Figure, grouped_bars
from casceq.report.mech import MechResults, int_or_zero, not_run, num_or_nan
from casceq.report.sections import Section
from casceq.report.tables import Cell, SourceBook, Table, fmt, small


def implicit_section(mech: MechResults, book: SourceBook) -> Section:
    """Table 6: κ of the implicit cascade (lens text -> backbone) and of the explicit cascade with the speech LLM."""
    title = "Table 6: implicit cascade"
    if not mech.implicit:
        return not_run("implicit", title, "implicit-cascade", mech)
    rows: list[tuple[Cell, ...]] = []
    problems: list[str] = []
    for path, obj in mech.implicit:
        for raw in obj.get("results") or []:
            try:
                r = ImplicitResult.from_json(raw)
                model, task, n = str(r.model), str(r.task), int(r.n)
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"{path}: malformed implicit-cascade result ({exc!r})")
                continue
            ref = book.add_file(f"implicit cascade of {model} on {task} (layer {r.layer})", path, n)
            nums = [
                num_or_nan(x)
                for x in (
                    r.kappa_impl,
                    r.kappa_casc,
                    r.accuracy_speech,
                    r.accuracy_implicit,
                    r.accuracy_cascade,
                )
            ]
            rows.append(
                (
                    Cell(model),
                    Cell(task),
                    Cell(str(r.layer)),
                    Cell(f"{n}{small(n)}", ref),
                    *tuple(Cell(fmt(x), ref) for x in nums),
                )
            )
    table = Table(
        "table6",
        "Implicit cascade: κ with the speech LLM of the lens-text cascade (κ impl) and of the explicit cascade "
        "(κ casc), and the three accuracies",
        ("model", "task", "layer", "n", "κ impl", "κ casc", "acc speech LLM", "acc implicit", "acc cascade"),
        tuple(rows),
        (
            "κ impl close to κ casc: the speech LLM's own hidden text explains its answers as well as a transcript.",
        ),
    )
    return Section("implicit", title, tuple(problems), (table,) if rows else ())


def _accuracy_rows(path: str, res: ErasureResult, book: SourceBook) -> tuple[list[tuple[Cell, ...]], dict]:
    model = str(res.model)
    rows: list[tuple[Cell, ...]] = []
    groups: dict[str, dict[str, float]] = {}
    for a in res.accuracy:
        task, concept, n, acc = str(a.task), str(a.condition), int(a.n), num_or_nan(a.accuracy)
        ref = book.add_file(f"erasure of {concept} in {model} on {task}", path, n)
        same = num_or_nan(a.same_as_none)
        rows.append(
            (
                Cell(model),
                Cell(task),
                Cell(concept),
                Cell(f"{n}{small(n)}", ref),
                Cell(fmt(acc), ref),
                Cell("–" if math.isnan(same) else f"{same:.0%}", ref),
            )
        )
        groups.setdefault(f"{model}\n{task}", {})[concept] = acc
    return rows, groups


def erasure_section(mech: MechResults, draw: bool, book: SourceBook) -> Section:
    """Table 7 / Figure 6: accuracy with each concept erased, and held-out probes before and after erasure."""
    title = "Table 7 / Figure 6: concept erasure"
    if not mech.erasure:
        return not_run("erasure", title, "erasure", mech)
    rows: list[tuple[Cell, ...]] = []
    checks: list[tuple[Cell, ...]] = []
    problems: list[str] = []
    groups: dict[str, dict[str, float]] = {}
    for path, obj in mech.erasure:
        try:
            res = ErasureResult.from_json(obj)
            got, g = _accuracy_rows(path, res, book)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{path}: malformed erasure results ({exc!r})")
            continue
        rows += got
        groups.update(g)
        model = str(res.model)
        for p in res.probes:
            ref = book.add_file(
                f"erasure completeness of {p.concept} at layer {p.layer} in {model}",
                path,
                int_or_zero(p.n_test),
            )
            checks.append(
                (
                    Cell(model),
                    Cell(str(p.concept)),
                    Cell(str(p.layer)),
                    Cell(str(p.metric)),
                    Cell(fmt(num_or_nan(p.before)), ref),
                    Cell(fmt(num_or_nan(p.after)), ref),
                    Cell(fmt(num_or_nan(p.chance)), ref),
                )
            )
    tables = [
        Table(
            "table7",
            "Accuracy with each concept erased at every probed layer during generation ('none' = no "
            "erasure); unchanged = share of answers identical to 'none'",
            ("model", "task", "erased", "n", "accuracy", "unchanged"),
            tuple(rows),
        ),
        Table(
            "erasure-probes",
            "Completeness: held-out linear probe of each concept before and after erasure "
            "(split by utterance), and chance",
            ("model", "concept", "layer", "metric", "before", "after", "chance"),
            tuple(checks),
        ),
    ]
    figs: tuple[Figure, ...] = ()
    if draw and groups:
        caption = "Task accuracy of the speech LLM with each concept erased ('none' = no erasure)."
        figs = (grouped_bars("figure6", "Figure 6: concept erasure", caption, groups, "accuracy"),)
    return Section("erasure", title, tuple(problems), tuple(t for t in tables if t.rows), figs)
