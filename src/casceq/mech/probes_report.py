"""The paper's Table 4 (markdown) and Figure 4 (probe score by layer, PNG + SVG) from :class:`ProbeResults`."""

from __future__ import annotations

import math
from pathlib import Path

from casceq.errors import require
from casceq.mech.probes import METRICS, PROBES, ProbeResults

# Okabe-Ito palette (colour-blind safe), one marker per probe so the figure also reads in grey.
STYLE = {
    "energy": ("#E69F00", "o"),
    "pitch": ("#56B4E9", "s"),
    "ctc": ("#009E73", "^"),
    "boc": ("#CC79A7", "D"),
}
LABELS = {"energy": "Energy R²", "pitch": "Pitch R²", "ctc": "CTC 1 − CER", "boc": "BoC R²"}


def _fmt(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.3f}"


def probe_table(results: ProbeResults) -> str:
    """Markdown table: one row per layer, one column per probe run, then the row counts and warnings."""
    probes = [p for p in PROBES if any(s.probe == p for s in results.scores)]
    head = "| layer | " + " | ".join(LABELS[p] for p in probes) + " |"
    lines = [head, "|---:|" + "---:|" * len(probes)]
    for layer in results.layers:
        lines.append(f"| {layer} | " + " | ".join(_fmt(results.score(p, layer)) for p in probes) + " |")
    first = {p: next(s for s in results.scores if s.probe == p) for p in probes}
    lines.append("")
    for p in probes:
        s = first[p]
        rows = "utterances" if p == "boc" else "positions"
        lines.append(
            f"- {LABELS[p]} ({METRICS[p]}): train {s.n_train_utterances} utterances / {s.n_train_rows} {rows}, "
            f"test {s.n_test_utterances} utterances / {s.n_test_rows} {rows}, D = {s.dim}"
        )
    grouped: dict[tuple[str, str], list[int]] = {}  # one line per distinct warning, naming its layers
    for s in results.scores:
        if s.warning:
            grouped.setdefault((s.probe, s.warning), []).append(s.layer)
    for (probe, warning), layers in grouped.items():
        lines.append(f"- warning ({probe}, layers {', '.join(map(str, layers))}): {warning}")
    return "\n".join(lines) + "\n"


def probe_figure(results: ProbeResults, out: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """Plot every probe's score against layer; writes ``out`` with ``.png`` and ``.svg`` suffixes."""
    require("matplotlib", "probe figures", extra="report")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=150)
    for p in PROBES:
        pts = [(s.layer, s.score) for s in results.scores if s.probe == p and not math.isnan(s.score)]
        if pts:
            colour, marker = STYLE[p]
            ax.plot(*zip(*pts, strict=True), color=colour, marker=marker, label=LABELS[p], linewidth=1.8)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("held-out score")
    ax.set_xticks(list(results.layers))
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.axhline(0.0, color="#999999", linewidth=0.8)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or results.model, fontsize=10)
    fig.tight_layout()
    base = Path(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    fig.savefig(png)
    fig.savefig(svg)
    plt.close(fig)
    return png, svg
