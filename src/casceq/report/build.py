"""Build the whole report: read inputs, run ``compare()``, assemble sections, write every requested format.

Output folder layout (default ``RUN_DIR/report/``, or ``./casceq-report/`` for a set of files)::

    report.md            every section, Markdown tables whose cells link to the source list at the end
    report.html          one self-contained page (figures, explorer with audio, sources), works offline
    tables.tex           every table as a booktabs LaTeX table
    figures/<key>.png    Figures 1-6 (150 dpi) and .svg
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from casceq.errors import InputError, MissingDependency
from casceq.report.analysis import Attribution, Reversal
from casceq.report.context import ReportContext, make_context, mech_dirs_of
from casceq.report.data import load_report_data
from casceq.report.explorer import MAX_CLIPS, explorer_data
from casceq.report.mech import MechResults, lens_section, probe_section, read_mech
from casceq.report.mech_effects import erasure_section, implicit_section
from casceq.report.sections import Section, accuracy_section, agreement_section, overlap_section, overview
from casceq.report.sections_errors import confound_section, cost_section, noise_section, shared_error_section
from casceq.report.tables import Source, SourceBook, md_text, sources_markdown, to_latex, to_markdown
from casceq.stats.results import CompareResult

FORMATS = ("md", "tex", "html", "png", "svg")
"""Output formats ``casceq report --formats`` accepts."""


@dataclass(frozen=True)
class ReportResult:
    """What was built: the files written, the sections, and the numbers behind them."""

    out: Path
    files: tuple[Path, ...]
    sections: tuple[Section, ...]
    compare: CompareResult
    reversals: tuple[Reversal, ...]
    attributions: tuple[Attribution, ...]
    sources: tuple[Source, ...]
    markdown: str


def _write(path: Path, data: str | bytes) -> Path:
    """Write atomically (temporary file beside the target, then rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _can_draw(formats: Sequence[str]) -> tuple[bool, str | None]:
    """Whether to draw figures, and if not, why (said in the overview)."""
    import importlib.util

    if not {"png", "svg", "html"} & set(formats):
        return False, "Figures were not drawn (no PNG, SVG or HTML format requested)."
    if importlib.util.find_spec("matplotlib") is None:
        if {"png", "svg"} & set(formats):
            raise MissingDependency("matplotlib", "report figures", extra="report")
        return False, "Figures were not drawn: matplotlib is not installed (pip install 'casceq[report]')."
    return True, None


SectionFn = Callable[[ReportContext[MechResults]], Section]
"""The one signature of a report section."""


def probes(ctx: ReportContext[MechResults]) -> Section:
    """Table 4 / Figure 4: probes of the speech LLM and the Whisper control."""
    return probe_section(ctx.mech, ctx.draw, ctx.book)


def lens(ctx: ReportContext[MechResults]) -> Section:
    """Table 5 / Figure 5: the logit lens."""
    return lens_section(ctx.mech, ctx.draw, ctx.book)


def implicit(ctx: ReportContext[MechResults]) -> Section:
    """Table 6: the implicit cascade."""
    return implicit_section(ctx.mech, ctx.book)


def erasure(ctx: ReportContext[MechResults]) -> Section:
    """Table 7 / Figure 6: LEACE erasure."""
    return erasure_section(ctx.mech, ctx.draw, ctx.book)


SECTIONS: tuple[SectionFn, ...] = (
    overview,
    accuracy_section,
    agreement_section,
    overlap_section,
    shared_error_section,
    confound_section,
    noise_section,
    cost_section,
    probes,
    lens,
    implicit,
    erasure,
)
"""Every section of the report in the paper's order: each ``section(ctx) -> Section``. A new section is a
function of the context added here."""

BUILT_FIRST: tuple[SectionFn, ...] = (noise_section,)
"""Sections built before the others. The order sections are built in numbers the sources their cells cite
(S1, S2, ...); Figure 3's table has always been numbered first, and a report's source numbers stay stable."""


def sections_of(ctx: ReportContext[MechResults]) -> list[Section]:
    """Every section of the report, in the order of :data:`SECTIONS` (built in :data:`BUILT_FIRST` order)."""
    order = (*BUILT_FIRST, *(f for f in SECTIONS if f not in BUILT_FIRST))
    built = {section: section(ctx) for section in order}
    return [built[section] for section in SECTIONS]


def markdown_report(
    title: str,
    subtitle: str,
    sections: Sequence[Section],
    sources: Sequence[Source],
    figure_ext: str | None,
    sources_note: str = "",
) -> str:
    """Return the Markdown report (figures referenced as ``figures/<key>.<ext>`` when drawn)."""
    # Every text may hold input strings (names, ids, paths, predictions): md_text keeps them from being HTML.
    lines = [f"# {md_text(title)}", "", md_text(subtitle), ""]
    for s in sections:
        lines += [f'## <a id="{s.key}"></a>{md_text(s.title)}', ""]
        lines += [f"> **Warning:** {md_text(w)}" for w in s.warnings] + ([""] if s.warnings else [])
        lines += [md_text(p) + "\n" for p in s.paragraphs]
        if figure_ext:
            for f in s.figures:
                title_, caption = md_text(f.title), md_text(f.caption)
                lines += [f"![{title_}](figures/{f.key}.{figure_ext})", "", f"*{title_}.* {caption}", ""]
        lines += [to_markdown(t) for t in s.tables]
    return "\n".join(lines).rstrip() + "\n\n" + sources_markdown(sources, sources_note)


def build_report(
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    mech_dirs: Sequence[str | Path] = (),
    audio_dirs: Sequence[str | Path] = (),
    audio_roots: Sequence[str | Path] = (),
    formats: Sequence[str] = FORMATS,
    run: str | None = None,
    n_bootstrap: int | None = None,
    seed: int | None = None,
    max_clips: int = MAX_CLIPS,
    compare_result: CompareResult | None = None,
) -> ReportResult:
    """Build the report of a run folder (or of interchange files and stores) and write the requested formats.

    Args:
        inputs: One run folder, or interchange JSONL files / stores / run folders.
        out: Output folder (default ``RUN_DIR/report`` or ``./casceq-report``).
        mech_dirs: Extra folders of mechanistic results (the run's ``mech/`` is always read).
        audio_dirs: Extra synthesis folders (texts and audio of the items).
        audio_roots: Folders besides each manifest's own that its audio paths may lead into.
        formats: Any of :data:`FORMATS`.
        run: Read only this run from stores.
        n_bootstrap: Bootstrap resamples (default: the run config's, else 1000).
        seed: Bootstrap seed (default: the run config's, else 0).
        max_clips: Cap on audio clips embedded in the HTML explorer.
        compare_result: Statistics already computed from the same predictions (the runner has them; must
            come from ``compare(..., intersect=True, kinds=...)``); default: computed here.

    Raises:
        InputError: Unknown format, unreadable inputs, or inconsistent predictions (from ``compare``).
        MissingDependency: PNG or SVG asked for without matplotlib (HTML alone goes on without figures).
    """
    from casceq.stats.compare import compare

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    data = load_report_data(inputs, audio_dirs=audio_dirs, run=run, audio_roots=audio_roots)
    result = compare_result or compare(
        data.predictions,
        n_bootstrap=data.n_bootstrap if n_bootstrap is None else n_bootstrap,
        seed=data.seed if seed is None else seed,
        intersect=True,
        kinds=dict(data.kinds),
    )
    out_dir = Path(out) if out else (data.root / "report" if data.root else Path("casceq-report"))
    try:  # before any work: a file in the way is the user's, and fails fast with its name
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot use as the output folder ({exc.strerror})", path=str(out_dir)) from exc
    draw, no_figures = _can_draw(formats)
    book = SourceBook(data.locations)
    ctx = make_context(data, result, read_mech(mech_dirs_of(data, mech_dirs)), book, draw, no_figures)
    sections = sections_of(ctx)
    found, atts = ctx.reversals, ctx.attributions
    sources = book.sources()
    subtitle = (
        f"casceq report of {data.title} — {len(data.predictions)} prediction rows. Every number links "
        "to its n and source rows (Sources)."
    )
    figure_ext = "png" if "png" in formats else "svg" if "svg" in formats else None
    note = f"Row locations are relative to the run folder {data.root}." if data.root else ""
    md = markdown_report(f"casceq report: {data.title}", subtitle, sections, sources, figure_ext, note)
    files: list[Path] = []
    if "md" in formats:
        files.append(_write(out_dir / "report.md", md))
    if "tex" in formats:
        tex = "% casceq report tables (needs \\usepackage{booktabs})\n\n" + "\n".join(
            to_latex(t) for s in sections for t in s.tables
        )
        files.append(_write(out_dir / "tables.tex", tex))
    for ext in ("png", "svg"):
        if ext in formats:
            for s in sections:
                for f in s.figures:
                    files.append(
                        _write(out_dir / "figures" / f"{f.key}.{ext}", f.png if ext == "png" else f.svg)
                    )
    if "html" in formats:
        from casceq.report.html import render_html

        explorer = explorer_data(data, result, max_clips)
        page = render_html(
            f"casceq report: {data.title}",
            sections,
            sources,
            explorer,
            [r.sentence() for r in found],
            subtitle,
            note,
        )
        files.append(_write(out_dir / "report.html", page))
    return ReportResult(
        out_dir, tuple(files), tuple(sections), result, tuple(found), tuple(atts), tuple(sources), md
    )
