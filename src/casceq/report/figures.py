"""The report's figures, drawn with matplotlib (Agg) in one colour-blind-safe style, as SVG text and PNG bytes.

Colours: the Okabe–Ito palette for systems (lines and bars), viridis for the kappa heatmap. Line style encodes
the system kind (cascade solid, speech LLM dashed, text dotted) so figures also read in greyscale. SVGs keep
text as text and use a fixed hash salt, so the same data gives the same file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from casceq.errors import MissingDependency

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe–Ito colours, yellow late (poor contrast on white)."""

KIND_STYLE = {"cascade": "-", "speech_llm": "--", "text": ":"}
PNG_DPI = 150


@dataclass(frozen=True)
class Figure:
    """A drawn figure: key (file stem), title, caption, SVG text and PNG bytes."""

    key: str
    title: str
    caption: str
    svg: str
    png: bytes


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependency("matplotlib", "report figures", extra="report") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "casceq",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=OKABE_ITO),
            # Labels are system and task names: text, never mathtext ("$\\frac{$" must not fail a report).
            "text.parse_math": False,
        }
    )
    return plt


def render(fig: Any, key: str, title: str, caption: str) -> Figure:
    """Save a matplotlib figure as SVG and PNG (no timestamps: reproducible files) and close it."""
    plt = _plt()
    svg, png = io.StringIO(), io.BytesIO()
    fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    fig.savefig(png, format="png", dpi=PNG_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return Figure(key, title, caption, svg.getvalue(), png.getvalue())


def colour_of(systems: Sequence[str]) -> dict[str, str]:
    """Return a fixed colour per system (order of first appearance)."""
    return {s: OKABE_ITO[i % len(OKABE_ITO)] for i, s in enumerate(systems)}


@dataclass(frozen=True)
class HeatRow:
    """One heatmap row: a pair label, whether the pair is matched, and kappa with its CI per task."""

    label: str
    matched: bool
    cells: Mapping[str, tuple[float, tuple[float, float] | None, int]]


def kappa_heatmap(rows: Sequence[HeatRow], tasks: Sequence[str], condition: str) -> Figure:
    """Figure 1: kappa per pair (rows, by mean kappa) and task (columns); matched pairs starred; CIs in cells."""
    import numpy as np

    plt = _plt()
    vals = np.array([[r.cells[t][0] if t in r.cells else np.nan for t in tasks] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(tasks), 0.9 + 0.55 * len(rows)))
    finite = vals[np.isfinite(vals)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=vmin, vmax=1.0, aspect="auto")
    for i, r in enumerate(rows):
        for j, t in enumerate(tasks):
            if t not in r.cells or not math.isfinite(r.cells[t][0]):
                ax.text(j, i, "–", ha="center", va="center", fontsize=8)
                continue
            k, ci, n = r.cells[t]
            text = f"{k:.2f}" + (f"\n[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + ("†" if n < 30 else "")
            dark = (k - vmin) / (1.0 - vmin + 1e-12) < 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color="white" if dark else "black")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(rows)), [("★ " if r.matched else "") + r.label for r in rows])
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_fontweight("bold" if r.matched else "normal")
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(im, ax=ax, label="Cohen's κ", fraction=0.04)
    caption = (
        f"Cohen's κ of predicted labels per pair and task ({condition}); rows ordered by mean κ over tasks, "
        "★ = matched pair (same LLM backbone), 95% bootstrap CIs in brackets, † n < 30."
    )
    return render(fig, "figure1", "Figure 1: agreement per pair and task", caption)


@dataclass(frozen=True)
class OverlapBar:
    """One bar of Figure 2: pair label, overlap (None: never both wrong), shared-error count, matched."""

    label: str
    overlap: float | None
    both_wrong: int
    matched: bool


def overlap_bars(groups: Mapping[str, tuple[float, Sequence[OverlapBar]]], condition: str) -> Figure:
    """Figure 2: conditional error overlap per pair, one panel per multi-class task, chance line 1/(C-1)."""
    plt = _plt()
    tasks = list(groups)
    height = max(len(bars) for _, bars in groups.values())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 0.8 + 0.45 * height), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        chance, bars = groups[task]
        ys = range(len(bars))
        vals = [b.overlap if b.overlap is not None else 0.0 for b in bars]
        colours = [OKABE_ITO[0] if b.matched else OKABE_ITO[1] for b in bars]
        ax.barh(list(ys), vals, color=colours, height=0.6)
        for y, b in zip(ys, bars, strict=True):
            label = "no shared error" if b.overlap is None else f"{b.overlap:.2f} (n={b.both_wrong})"
            ax.text((b.overlap or 0.0) + 0.02, y, label, va="center", fontsize=7.5)
        ax.axvline(chance, color="black", linestyle="--", linewidth=1, label=f"chance 1/(C−1) = {chance:.2f}")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        ax.set_yticks(list(ys), [("★ " if b.matched else "") + b.label for b in bars])
        ax.set_xlim(0, 1.3)
        ax.set_xlabel("P(same wrong label | both wrong)")
        ax.set_title(task)
        ax.invert_yaxis()
    caption = (
        f"Conditional error overlap ({condition}): of the examples both systems got wrong, the share with the "
        "same wrong label; dashed line = chance 1/(C−1); blue ★ = matched pair, orange = other pairs; "
        "n = examples both got wrong."
    )
    return render(fig, "figure2", "Figure 2: conditional error overlap", caption)


def noise_curves(
    points: Sequence[Any], systems: Sequence[str], kinds: Mapping[str, str], tasks: Sequence[str]
) -> Figure:
    """Figure 3: accuracy (with Wilson CIs) against SNR per system, one panel per task; clean at the left."""
    plt = _plt()
    colours = colour_of(systems)
    snrs = sorted({p.snr for p in points if p.snr is not None}, reverse=True)
    clean_x = (snrs[0] + 5.0) if snrs else 0.0
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.2), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for k, s in enumerate(systems):
            # A small horizontal dodge per system keeps overlapping error bars apart.
            dodge = 0.35 * (k - (len(systems) - 1) / 2)
            pts = sorted(
                (p for p in points if p.task == task and p.system == s),
                key=lambda p: clean_x if p.snr is None else p.snr,
                reverse=True,
            )
            if not pts:
                continue
            xs = [(clean_x if p.snr is None else p.snr) + dodge for p in pts]
            ys = [p.accuracy for p in pts]
            err = [[p.accuracy - p.ci[0] for p in pts], [p.ci[1] - p.accuracy for p in pts]]
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                label=s,
                color=colours[s],
                linestyle=KIND_STYLE.get(kinds.get(s, ""), "-"),
                marker="o",
                markersize=3.5,
                capsize=2,
                linewidth=1.4,
            )
        ax.set_xticks([clean_x, *snrs], ["clean", *[f"{x:g}" for x in snrs]])
        ax.invert_xaxis()
        ax.set_xlabel("babble SNR (dB)")
        ax.set_title(task)
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7.5, loc="lower left", frameon=False)
    caption = (
        "Accuracy against babble SNR per system (95% Wilson CIs); clean audio at the left, noise grows to the "
        "right. Solid = cascade, dashed = speech LLM, dotted = text (does not hear the audio)."
    )
    return render(fig, "figure3", "Figure 3: accuracy under babble noise", caption)


def layer_lines(
    key: str,
    title: str,
    caption: str,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    ylabel: str,
) -> Figure:
    """Per-layer curves (probes, logit lens): one panel per model, one line per measure ``{name: (x, y)}``."""
    plt = _plt()
    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.0), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], names, strict=True):
        for i, (label, (xs, ys)) in enumerate(panels[model].items()):
            ax.plot(xs, ys, marker="o", markersize=3.5, label=label, color=OKABE_ITO[i % len(OKABE_ITO)])
        ax.set_title(model)
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7.5, frameon=False)
    return render(fig, key, title, caption)


def grouped_bars(
    key: str, title: str, caption: str, groups: Mapping[str, Mapping[str, float]], ylabel: str
) -> Figure:
    """Draw grouped bars (erasure): ``{group (x tick): {series: value}}``."""
    plt = _plt()
    ticks = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(ticks) * max(1, len(series)) * 0.5, 3.0))
    for i, s in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(ticks))]
        ax.bar(
            xs,
            [groups[t].get(s, math.nan) for t in ticks],
            width=width,
            label=s,
            color=OKABE_ITO[i % len(OKABE_ITO)],
        )
    ax.set_xticks(range(len(ticks)), ticks, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7.5, frameon=False)
    return render(fig, key, title, caption)
