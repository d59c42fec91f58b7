"""Report sections: Table 3 (shared errors, ASR vs LLM), the backbone confound, Figure 3 (noise), cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from casceq.report.analysis import NoisePoint, costs, noise_points
from casceq.report.context import ReportContext
from casceq.report.data import ReportData
from casceq.report.figures import noise_curves
from casceq.report.sections import Section, group_keys, no_pairs_reason, primary_condition
from casceq.report.tables import Cell, SourceBook, Table, fmt, fmt_ci, small
from casceq.report.wer import TRANSCRIPT_RIGHT_WER
from casceq.stats.results import CompareResult
from casceq.types import CLEAN

MAX_LISTED = 10
"""Shared-error examples listed per pair and task in Table 3 (the HTML explorer lists all of them)."""


def _share(k: int, n: int) -> str:
    return f"{k} ({k / n:.0%})" if n else "0"


def _clip(text: str | None, width: int = 90) -> str:
    if text is None:
        return "(text unavailable)"
    return text if len(text) <= width else text[: width - 1] + "…"


def shared_error_section(ctx: ReportContext[Any]) -> Section:
    """Table 3: shared errors of (non-cascade, cascade) pairs, attributed to ASR or LLM by transcript WER."""
    result, data, book = ctx.result, ctx.data, ctx.book
    title = "Table 3: shared errors — ASR-induced or LLM?"
    reason = no_pairs_reason(data, result)
    if reason:
        return Section("shared", title, (reason,))
    atts = list(ctx.attributions)
    if not atts:
        return Section(
            "shared",
            title,
            (
                "No pair of one cascade and one other system: shared errors cannot be attributed to ASR or LLM "
                f"(system kinds: {', '.join(f'{s}={k}' for s, k in data.kinds.items())}).",
            ),
        )
    rule = (
        f"A shared error is an example both systems got wrong. It is an LLM error when the cascade's transcript "
        f"is right — word error rate {TRANSCRIPT_RIGHT_WER:g} after Whisper's English normalisation (case, "
        "punctuation, contractions, numbers, spellings; see docs/report.md) against the text the voice spoke — and "
        "ASR-induced otherwise."
    )
    paras = [rule]
    if not data.texts:
        paras.append(
            "No synthesis manifest was found, so example texts are unavailable: every shared error is "
            "'unknown' (give the audio folders with --audio)."
        )
    rows = []
    for a in atts:
        ref = book.add(
            f"shared errors of {a.a} and {a.b} on {a.task} ({a.condition})",
            [(s, a.task, a.condition, e.example_id) for e in a.examples for s in (a.a, a.b)],
        )
        rows.append(
            (
                Cell(a.a),
                Cell(a.b),
                Cell(a.task),
                Cell(a.condition),
                Cell(f"{a.n}{small(a.n)}"),
                Cell(str(a.shared), ref),
                Cell(_share(a.asr, a.shared), ref),
                Cell(_share(a.llm, a.shared), ref),
                Cell(_share(a.unknown, a.shared), ref),
            )
        )
    counts = Table(
        "table3",
        "Shared errors per pair, task and condition, by whether the cascade's transcript was right",
        ("a", "b", "task", "condition", "n", "shared errors", "ASR-induced", "LLM error", "unknown"),
        tuple(rows),
        fold=False,
    )
    cond = primary_condition(result)
    ex_rows = []
    for a in (a for a in atts if a.condition == cond):
        for e in a.examples[:MAX_LISTED]:
            verdict = {True: "right (LLM error)", False: f"wrong, WER {fmt(e.wer, 2)} (ASR)", None: "unknown"}
            ex_rows.append(
                (
                    Cell(f"{a.a} / {a.b}"),
                    Cell(a.task),
                    Cell(e.example_id),
                    Cell(_clip(e.text)),
                    Cell(e.gold),
                    Cell(e.label_a),
                    Cell(e.label_b),
                    Cell(_clip(e.transcript, 70) if e.transcript else "–"),
                    Cell(verdict[e.transcript_right]),
                )
            )
    examples = Table(
        "table3-examples",
        f"Shared-error examples ({cond}; first {MAX_LISTED} per pair and task — the HTML explorer lists all)",
        (
            "pair",
            "task",
            "example",
            "input text",
            "gold",
            "answer a",
            "answer b",
            "cascade transcript",
            "transcript",
        ),
        tuple(ex_rows),
        fold=False,
    )
    return Section("shared", title, tuple(paras), (counts, examples) if ex_rows else (counts,))


def _with_backbone(system: str, data: ReportData) -> str:
    return f"{system} ({data.backbones.get(system) or 'no backbone'})"


def confound_section(ctx: ReportContext[Any]) -> Section:
    """Tabulate the backbone confound: Δκ = κ(speech LLM, matched cascade) − κ(speech LLM, mismatched cascade)."""
    result, data, book = ctx.result, ctx.data, ctx.book
    title = "Backbone confound (Δκ matched − mismatched)"
    reason = no_pairs_reason(data, result)
    if reason:
        return Section("confound", title, (reason,))
    if not result.backbone_confound:
        speech = [s for s, k in data.kinds.items() if k == "speech_llm"]
        casc = [s for s, k in data.kinds.items() if k == "cascade"]
        return Section(
            "confound",
            title,
            (
                "Not computed: needs a speech LLM with a declared backbone, a cascade on the same backbone and a "
                f"cascade on another one (speech LLMs: {', '.join(speech) or 'none'}; cascades: "
                f"{', '.join(_with_backbone(c, data) for c in casc) or 'none'}).",
            ),
        )
    rows = []
    for r in result.backbone_confound:
        keys = group_keys(result, r.task, r.condition, [r.speech_llm, r.matched, r.mismatched])
        ref = book.add(
            f"backbone confound of {r.speech_llm} ({r.matched} vs {r.mismatched}) on {r.task} "
            f"({r.condition})",
            keys,
        )
        rows.append(
            (
                Cell(r.speech_llm),
                Cell(r.backbone),
                Cell(r.task),
                Cell(r.condition),
                Cell(r.matched),
                Cell(f"{r.mismatched} ({r.mismatched_backbone})"),
                Cell(fmt(r.kappa_matched), ref),
                Cell(fmt(r.kappa_mismatched), ref),
                Cell(f"{fmt(r.delta_kappa)}{fmt_ci(r.delta_ci)}", ref),
            )
        )
    table = Table(
        "confound",
        "Backbone confound: κ with the matched cascade minus κ with a mismatched cascade, 95% bootstrap CI",
        (
            "speech LLM",
            "backbone",
            "task",
            "condition",
            "matched cascade",
            "mismatched cascade",
            "κ matched",
            "κ mismatched",
            "Δκ",
        ),
        tuple(rows),
        ("A positive Δκ whose CI excludes 0: part of the agreement is the shared LLM, not the audio path.",),
    )
    return Section("confound", title, (), (table,))


def _expected_snrs(data: ReportData) -> list[str]:
    from casceq.audio.conditions import PAPER_CONDITIONS

    have = set(data.conditions)
    return [c for c in PAPER_CONDITIONS if c not in have]


def noise_section(ctx: ReportContext[Any]) -> Section:
    """Figure 3 (accuracy vs SNR) with the ranking reversals in words, and accuracy per condition.

    The reversals are the context's (``noise_reversals``): the caller reports them too.
    """
    result, data, book, draw = ctx.result, ctx.data, ctx.book, ctx.draw
    title = "Figure 3: accuracy under babble noise"
    points = noise_points(result)
    absent = _expected_snrs(data)
    has_clean = any(p.snr is None for p in points)
    has_noise = any(p.snr is not None for p in points)
    paras: list[str] = []
    if absent:
        paras.append(
            f"Conditions of the paper's noise experiment missing from this run: {', '.join(absent)}."
        )
    if not (has_clean and has_noise):
        paras.append(
            "Figure 3 needs clean audio and at least one babble@SNR condition; this run has "
            f"{', '.join(data.conditions)}."
        )
        return Section("noise", title, tuple(paras))
    found = ctx.reversals
    if found:
        paras += [r.sentence() for r in found]
    else:
        paras.append(
            "No ranking reversal: every pair of audio systems keeps its clean-audio order at the lowest SNR."
        )
    tasks = list(dict.fromkeys(p.task for p in points))
    figs = (noise_curves(points, data.systems, data.kinds, tasks),) if draw else ()
    return Section("noise", title, tuple(paras), (_condition_table(points, result, book),), figs)


def _condition_table(points: Sequence[NoisePoint], result: CompareResult, book: SourceBook) -> Table:
    conds = sorted({(p.snr, p.condition) for p in points}, key=lambda x: -1e9 if x[0] is None else -x[0])
    names = [c for _, c in conds]
    rows = []
    for s, t in dict.fromkeys((p.system, p.task) for p in points):
        cells = [Cell(s), Cell(t)]
        for c in names:
            p = next((q for q in points if q.system == s and q.task == t and q.condition == c), None)
            if p is None:
                cells.append(Cell("missing"))
                continue
            ref = book.add(f"accuracy of {s} on {t} ({c})", group_keys(result, t, c, [s]))
            cells.append(Cell(f"{fmt(p.accuracy)}{fmt_ci(p.ci)}{small(p.n)}", ref))
        rows.append(tuple(cells))
    return Table(
        "noise",
        "Accuracy per condition, 95% Wilson CI (the numbers of Figure 3)",
        ("system", "task", *names),
        tuple(rows),
    )


def cost_section(ctx: ReportContext[Any]) -> Section:
    """Seconds per item and per audio second next to accuracy clean and at the lowest SNR."""
    data, book = ctx.data, ctx.book
    rows, measured = [], costs(data, ctx.result)
    for c in measured:
        keys = [
            (p.system, p.task, p.condition, p.example_id)
            for p in data.predictions
            if p.system == c.system and p.task == c.task
        ]
        ref = book.add(f"timings of {c.system} on {c.task} (all conditions)", keys, c.n)
        per_audio = "text input" if c.kind == "text" else fmt(c.per_audio_second, 3)
        noisy = "–" if c.accuracy_noisy is None else f"{fmt(c.accuracy_noisy)} ({c.noisy_condition})"
        rows.append(
            (
                Cell(c.system),
                Cell(c.kind),
                Cell(c.task),
                Cell(str(c.n), ref),
                Cell(fmt(c.per_item, 4), ref),
                Cell(per_audio, ref),
                Cell(fmt(c.accuracy_clean)),
                Cell(noisy),
            )
        )
    paras = [
        "Wall time stored with each prediction (cascades: ASR plus LLM; text systems: time per base example "
        "shared over its voices and conditions). Per audio second = compute seconds over seconds of input audio "
        "(durations from the synthesis manifest)."
    ]
    if not any(c.audio_seconds for c in measured):
        paras.append(
            "No audio durations known (no synthesis manifest): the per-audio-second column is empty."
        )
    if all(c.per_item == 0 for c in measured):
        paras.append("All stored timings are 0: these predictions carry no wall time (e.g. imported files).")
    table = Table(
        "cost",
        "Cost next to quality",
        (
            "system",
            "kind",
            "task",
            "rows",
            "s / item",
            "s / audio s",
            f"accuracy {CLEAN}",
            "accuracy, lowest SNR",
        ),
        tuple(rows),
    )
    return Section("cost", "Cost next to quality", tuple(paras), (table,))
