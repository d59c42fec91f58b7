"""What every report section reads: one :class:`ReportContext`, built once per report.

A section is a function ``section(ctx: ReportContext[MechResults]) -> Section`` (``casceq.report.build.SECTIONS`` lists
them in the paper's order). The context holds the inputs (predictions and their metadata), the one
``compare()`` result, the mechanistic result files, the source book every cited number is registered in,
and the analyses more than one section or the caller need (attributions of shared errors, ranking reversals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from casceq.report.analysis import Attribution, Reversal, attributions, noise_points, reversals
from casceq.report.data import ReportData
from casceq.report.tables import SourceBook
from casceq.stats.results import CompareResult

M = TypeVar("M")
"""The type of the mechanistic results (``casceq.report.mech.MechResults``: that module builds sections, so this
one, which every section reads, names it only as a parameter)."""


@dataclass(frozen=True)
class ReportContext(Generic[M]):
    """The inputs of every section.

    Attributes:
        data: Predictions with kinds, backbones, texts and audio of the items.
        result: The ``compare()`` statistics of ``data.predictions``.
        mech: Mechanistic result files read from the run's ``mech/`` and ``--mech`` folders.
        book: Collects the source rows of every number a section cites (the order of calls numbers them).
        draw: Whether to draw figures.
        no_figures: Why figures are not drawn (the overview says it), or None.
        attributions: Shared errors of (non-cascade, cascade) pairs attributed to ASR or LLM.
        reversals: Ranking reversals between clean audio and the lowest SNR (none without both).
    """

    data: ReportData
    result: CompareResult
    mech: M
    book: SourceBook
    draw: bool
    no_figures: str | None
    attributions: tuple[Attribution, ...]
    reversals: tuple[Reversal, ...]


def noise_reversals(data: ReportData, result: CompareResult) -> list[Reversal]:
    """Ranking reversals under noise: only when the run has clean audio and at least one babble@SNR condition."""
    points = noise_points(result)
    if not (any(p.snr is None for p in points) and any(p.snr is not None for p in points)):
        return []
    return reversals(points, dict(data.kinds))


def make_context(
    data: ReportData,
    result: CompareResult,
    mech: M,
    book: SourceBook,
    draw: bool,
    no_figures: str | None = None,
) -> ReportContext[M]:
    """The context of one report: the shared analyses computed once."""
    return ReportContext(
        data,
        result,
        mech,
        book,
        draw,
        no_figures,
        tuple(attributions(data, result)),
        tuple(noise_reversals(data, result)),
    )


def mech_dirs_of(data: ReportData, extra: Sequence[str | Path]) -> list[Path]:
    """The run's own ``mech/`` folder (when the input is a run folder) and the extra ``--mech`` folders."""
    return ([data.root / "mech"] if data.root else []) + [Path(d) for d in extra]
