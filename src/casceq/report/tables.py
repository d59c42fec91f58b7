"""Tables as data (cells that carry a source reference), rendered to Markdown and LaTeX.

Traceability: every number cell refers to a :class:`Source`, an entry of the report's source list giving the n
behind the number and where its rows are (``predictions.jsonl`` line ranges, or the store with a filter). In
Markdown a cell reads ``0.842 [0.80, 0.88] [S3](#s3)``; in HTML the cell is a link to the source entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from casceq.report.data import Key

SMALL_N = 30
"""Below this many items a number is flagged (its interval is wide): the cell gets a dagger and a warning."""


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and, for numbers, the id of the source it was computed from."""

    text: str
    ref: str | None = None


@dataclass(frozen=True)
class Table:
    """A rendered-format-independent table.

    Attributes:
        key: Short id (``"table2"``), used for file names and anchors.
        title: Caption.
        columns: Column headers.
        rows: Rows of cells, each as long as ``columns``.
        notes: Sentences printed under the table.
        fold: Whether HTML may fold the table when it is long (False for the paper's key tables).
    """

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    fold: bool = True


@dataclass(frozen=True)
class Source:
    """Where a number comes from: its n, a description of the filter, and the row locations."""

    ref: str
    n: int
    description: str
    locations: tuple[str, ...]
    example_ids: tuple[str, ...] = field(default=(), compare=False)


class SourceBook:
    """Collects the sources of a report; equal descriptions share one id (``S1``, ``S2``, ...)."""

    def __init__(self, locations: Mapping[Key, tuple[str, int | None]]) -> None:
        self._locations = locations
        self._by_desc: dict[str, Source] = {}

    def add(self, description: str, keys: Sequence[Key], n: int | None = None) -> str:
        """Register the rows behind a number; returns its reference id."""
        if description in self._by_desc:
            return self._by_desc[description].ref
        ref = f"S{len(self._by_desc) + 1}"
        ids = tuple(dict.fromkeys(k[3] for k in keys))
        src = Source(ref, len(ids) if n is None else n, description, line_ranges(self._locations, keys), ids)
        self._by_desc[description] = src
        return ref

    def add_file(self, description: str, path: str, n: int) -> str:
        """Register a result file (mechanistic results) behind a number; returns its reference id."""
        if description not in self._by_desc:
            ref = f"S{len(self._by_desc) + 1}"
            self._by_desc[description] = Source(ref, n, description, (path,))
        return self._by_desc[description].ref

    def sources(self) -> list[Source]:
        """All sources in order of registration."""
        return list(self._by_desc.values())


def line_ranges(locations: Mapping[Key, tuple[str, int | None]], keys: Iterable[Key]) -> tuple[str, ...]:
    """Compress row locations into ``file:lines a-b, c`` strings (rows without a line number: the file)."""
    lines: dict[str, list[int]] = {}
    whole: list[str] = []
    for k in keys:
        loc = locations.get(k)
        if loc is None:
            continue
        path, line = loc
        if line is None:
            if path not in whole:
                whole.append(path)
        else:
            lines.setdefault(path, []).append(line)
    out = []
    for path, nums in lines.items():
        nums = sorted(set(nums))
        spans, start, prev = [], nums[0], nums[0]
        for x in [*nums[1:], None]:
            if x is not None and x == prev + 1:
                prev = x
                continue
            spans.append(f"{start}" if start == prev else f"{start}-{prev}")
            if x is not None:
                start = prev = x
        out.append(f"{path}: lines {', '.join(spans)}")
    return tuple(out + whole)


def fmt(x: float | None, digits: int = 3) -> str:
    """Format a number with fixed decimals, or an en dash when undefined (None or NaN)."""
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def fmt_ci(ci: tuple[float, float] | None, digits: int = 2) -> str:
    """`` [lo, hi]`` or the empty string when there is no interval."""
    return "" if ci is None else f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def small(n: int) -> str:
    """Return a dagger when n is below :data:`SMALL_N`."""
    return "†" if n < SMALL_N else ""


def md_text(text: str) -> str:
    """Text from the inputs (names, transcripts, paths) made inert in Markdown: ``<`` cannot open raw HTML.

    A backslash before ``<`` is CommonMark's escape: renderers show the ``<``, and raw readers still read it.
    """
    return text.replace("<", "\\<")


def _md_escape(text: str) -> str:
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    """Render a table as GitHub-flavoured Markdown; cells with a source end in a link ``[S3](#s3)``."""
    head = (
        f"**{table.key.replace('table', 'Table ')}**: {table.title}"
        if table.key[-1].isdigit()
        else f"**{table.title}**"
    )
    lines = [md_text(head), "", "| " + " | ".join(map(_md_escape, table.columns)) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    for row in table.rows:
        cells, last = [], None
        for c in row:
            # One reference per run of cells sharing it keeps rows readable (the HTML links every cell).
            ref = f" [{c.ref}](#{c.ref.lower()})" if c.ref and c.ref != last else ""
            cells.append(_md_escape(c.text) + ref)
            last = c.ref or last
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"_{md_text(n)}_" for n in table.notes]
    return "\n".join(lines).rstrip() + "\n"


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "†": r"$^\dagger$",
    "κ": r"$\kappa$",
    "Δ": r"$\Delta$",
    "–": "--",
    "−": "$-$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "×": r"$\times$",
    "★": r"$\star$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few Unicode symbols the report uses to math mode."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """Render a table as a ``booktabs`` LaTeX ``table`` environment (sources are left out)."""
    align = "l" * min(2, len(table.columns)) + "r" * max(0, len(table.columns) - 2)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(c.text) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(table.title)}}}"]
    lines += [rf"\label{{tab:casceq-{table.key}}}", r"\end{table}"]
    if table.notes:
        lines += ["% " + n.replace("\n", " ") for n in table.notes]
    return "\n".join(lines) + "\n"


def sources_markdown(sources: Sequence[Source], preamble: str = "") -> str:
    """Render the Markdown source list: an anchor per source with n, filter and row locations."""
    lines = ["## Sources", ""] + ([preamble, ""] if preamble else [])
    for s in sources:
        where = "; ".join(s.locations) or "no row locations known"
        lines.append(
            f'- <a id="{s.ref.lower()}"></a>**{s.ref}** (n = {s.n}): {md_text(s.description)}. '
            f"Rows: {md_text(where)}."
        )
    return "\n".join(lines) + "\n"
