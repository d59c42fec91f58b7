"""One self-contained HTML file: sections, tables whose cells link to their sources, figures, explorer.

Figures are inlined as ``data:image/svg+xml`` images (each SVG stays its own document, so ids inside two
figures never clash); CSS, script and data are inline; nothing is fetched at view time.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from html import escape
from typing import Any

from casceq.report.figures import Figure
from casceq.report.html_assets import CSS, JS
from casceq.report.sections import Section
from casceq.report.tables import Source, Table

FOLD_ROWS = 24
"""Tables longer than this are folded into a <details> element (click to open)."""

MAX_LISTED_IDS = 200
"""Example ids listed per source entry (the filter and line ranges always cover all rows)."""


_JSON_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
"""JSON string escapes for the characters HTML acts on inside a <script>."""


def _json_script(obj: Any) -> str:
    # Not only "</": "<!--<script>" in a prediction would put the element into HTML's double-escaped state,
    # where its own "</script>" no longer ends it. With no "<", ">" or "&" left, the element's text is inert;
    # the escapes are inside JSON strings (no structural JSON character is one of the three), so it decodes
    # to the same value.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).translate(_JSON_SCRIPT_ESCAPES)


def table_html(table: Table, sources: dict[str, Source]) -> str:
    """Render a table with each referenced cell a link to its source entry (title: n and source id)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for c in row:
            if c.ref:
                n = sources[c.ref].n if c.ref in sources else "?"
                cells.append(
                    f'<td><a class="ref" href="#{c.ref.lower()}" title="n = {n} · source {c.ref}">'
                    f"{escape(c.text)}<sup>{c.ref}</sup></a></td>"
                )
            else:
                cells.append(f"<td>{escape(c.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    html = (
        f'<table id="{escape(table.key)}"><caption>{escape(table.title)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{notes}"
    )
    if (
        table.fold and len(table.rows) > FOLD_ROWS
    ):  # long tables fold so the figures and findings stay in view
        return f"<details><summary>{escape(table.title)} ({len(table.rows)} rows)</summary>{html}</details>"
    return html


def figure_html(fig: Figure) -> str:
    """Render a figure as an inline SVG image with its caption."""
    uri = "data:image/svg+xml;base64," + base64.b64encode(fig.svg.encode("utf-8")).decode()
    size = re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', fig.svg)
    # Points to CSS pixels (4/3), a little larger for screens; max-width keeps it inside narrow windows.
    style = f' style="width:{float(size.group(1)) * 4 / 3 * 1.2:.0f}px"' if size else ""
    return (
        f'<figure id="{fig.key}"><img class="figure" id="img-{fig.key}" alt="{escape(fig.title)}"{style} src="{uri}">'
        f"<figcaption><b>{escape(fig.title)}.</b> {escape(fig.caption)}</figcaption></figure>"
    )


def section_html(section: Section, sources: dict[str, Source], findings: Sequence[str] = ()) -> str:
    """Render a section: warnings, paragraphs (findings highlighted), figures, then tables."""
    parts = [f'<section id="{section.key}"><h2>{escape(section.title)}</h2>']
    parts += [f'<div class="warn">{escape(w)}</div>' for w in section.warnings]
    for p in section.paragraphs:
        cls = ' class="finding"' if p in findings else ""
        parts.append(f"<p{cls}>{escape(p)}</p>")
    parts += [figure_html(f) for f in section.figures]
    parts += [table_html(t, sources) for t in section.tables]
    return "".join(parts) + "</section>"


def explorer_html(data: dict[str, Any] | None) -> str:
    """Render the explorer's controls and empty table (filled by the script from the embedded JSON)."""
    if data is None:
        data = {"pairs": [], "groups": [], "clips": [], "systems": [], "max_clips": 0, "n_wanted": 0}
    n_clips, wanted = len(data["clips"]), data["n_wanted"]
    clip_note = (
        f"{n_clips} audio clip(s) embedded of {wanted} disagreement/shared-error item(s) (cap {data['max_clips']}; "
        "shared errors first)."
    )
    filters = (
        ("shared", "shared errors (both wrong)"),
        ("shared_same", "shared errors, same wrong label"),
        ("disagree", "disagreements (labels differ)"),
        ("a_only", "only a wrong"),
        ("b_only", "only b wrong"),
        ("all", "all examples"),
    )
    opts = "".join(f'<option value="{v}">{escape(t)}</option>' for v, t in filters)
    return f"""<section id="explorer"><h2>Per-example explorer</h2>
<p class="small">Pick a pair, task and condition; filter the examples. Hover an answer for the raw model output.
{escape(clip_note)}</p>
<div class="controls">
<label>pair<select id="ex-pair"></select></label><label>task<select id="ex-task"></select></label>
<label>condition<select id="ex-cond"></select></label><label>show<select id="ex-filter">{opts}</select></label>
<label>search<input id="ex-search" type="search" placeholder="id, text, label, transcript"></label>
<span id="ex-count" class="small"></span></div>
<table id="ex-rows"><thead><tr><th>example</th><th>input text</th><th>gold</th><th>a: <span id="ex-a">a</span></th>
<th>b: <span id="ex-b">b</span></th><th>transcripts</th><th>audio</th></tr></thead><tbody></tbody></table>
<script type="application/json" id="explorer-data">{_json_script(data)}</script></section>"""


def sources_html(sources: Sequence[Source], note: str = "") -> str:
    """Render the source list: n, filter, row locations and the example ids behind every referenced number."""
    items = []
    for s in sources:
        where = "; ".join(s.locations) or "no row locations known"
        ids = ", ".join(s.example_ids[:MAX_LISTED_IDS])
        more = (
            f" … and {len(s.example_ids) - MAX_LISTED_IDS} more"
            if len(s.example_ids) > MAX_LISTED_IDS
            else ""
        )
        items.append(
            f'<li id="{s.ref.lower()}"><b>{s.ref}</b> (n = {s.n}): {escape(s.description)}. Rows: {escape(where)}.'
            f"<details class='ids'><summary>example ids</summary><span class='small'>{escape(ids)}{more}</span>"
            "</details></li>"
        )
    head = f'<p class="small">{escape(note)}</p>' if note else ""
    return f'<section id="sources"><h2>Sources</h2>{head}<ol style="list-style:none;padding-left:0">{"".join(items)}</ol></section>'


def render_html(
    title: str,
    sections: Sequence[Section],
    sources: Sequence[Source],
    explorer: dict[str, Any] | None,
    findings: Sequence[str] = (),
    subtitle: str = "",
    sources_note: str = "",
) -> str:
    """Render the whole page."""
    by_ref = {s.ref: s for s in sources}
    nav = "".join(f'<a href="#{s.key}">{escape(s.title.split(":")[0])}</a>' for s in sections)
    nav += '<a href="#explorer">Explorer</a><a href="#sources">Sources</a>'
    body = "".join(section_html(s, by_ref, findings) for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body><header><h1>{escape(title)}</h1><div class="small">{escape(subtitle)}</div><nav>{nav}</nav></header>
<main>{body}{explorer_html(explorer)}{sources_html(sources, sources_note)}
<pre id="selftest" hidden></pre></main>
<script>{JS}</script></body></html>
"""
