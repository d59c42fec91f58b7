"""What a run folder gets after its predictions: interchange JSONL, compare.json, a short Markdown report.

The full report (``report/``) is built above this layer, by ``casceq.stages.run``, from the statistics
``write_outputs`` returns.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casceq.stats.results import CompareResult

PREDICTIONS = "predictions.jsonl"
COMPARE = "compare.json"
REPORT = "report.md"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def outputs_current(out: Path) -> bool:
    """Whether the run folder's outputs are newer than its store (a re-run that wrote nothing keeps them)."""
    store = out / "store.sqlite"
    files = [out / PREDICTIONS, out / COMPARE, out / REPORT]
    if not store.exists() or not all(f.exists() for f in files):
        return False
    newest_store = max(p.stat().st_mtime for p in out.glob("store.sqlite*"))
    return min(f.stat().st_mtime for f in files) >= newest_store


def write_outputs(ctx: Any, summary: Any) -> CompareResult | None:
    """Export the store, compute the behavioural statistics and write the short report.

    Returns the statistics (None without predictions): ``casceq.stages.run`` builds the full report from them.
    """
    from casceq.io.interchange import write_predictions
    from casceq.io.store import Store

    out: Path = ctx.out
    with Store(out / "store.sqlite") as store:
        preds = store.predictions(run=ctx.cfg.name)
    write_predictions(out / PREDICTIONS, preds)
    if not preds:
        text = "\n".join(
            ["# casceq run", "", "No predictions were written.", "", *input_failure_lines(summary)]
        )
        _atomic_write(out / REPORT, text + "\n")
        return None
    from casceq.stats.compare import compare

    present = {p.system for p in preds}
    kinds = {s.name: s.kind for s in ctx.cfg.systems if s.name in present}
    result = compare(preds, n_bootstrap=ctx.cfg.bootstrap, seed=ctx.cfg.seed, intersect=True, kinds=kinds)
    data = json.loads(result.to_json())
    # examples whose input could not be used: left out of every statistic above, counted here
    data["input_failures"] = [
        {**asdict(g), "errors": list(g.errors)} for g in getattr(summary, "input_failures", [])
    ]
    _atomic_write(out / COMPARE, json.dumps(data, indent=2, allow_nan=False))
    _atomic_write(out / REPORT, markdown_summary(ctx, summary, data))
    return result


def input_failure_lines(summary: Any) -> list[str]:
    """Markdown table of the run's input failures per system, task and condition (none: no lines)."""
    groups = getattr(summary, "input_failures", [])
    if not groups:
        return []
    lines = [
        "## Input failures (not scored)",
        "",
        "Examples whose audio could not be used: left out of every statistic, retried by the next start of the run.",
        "",
        "| system | task | condition | failed | of | first errors |",
        "|---|---|---|---|---|---|",
    ]
    for g in groups:
        first = "; ".join(e.replace("|", "\\|") for e in g.errors)
        lines.append(f"| {g.system} | {g.task} | {g.condition} | {g.failed} | {g.total} | {first} |")
    return [*lines, ""]


def models_lines(out: Path) -> list[str]:
    """Markdown table of the weights each system loaded (``models.json``): path, resolved dtype and device."""
    from casceq.run.models import read_models

    rows = [
        f"| {name} | {role} | {w['path']} | {w['dtype']} | {w['device']} |"
        for name, roles in read_models(out).items()
        for role, rec in roles.items()
        if isinstance(rec, dict)
        for w in rec.get("weights", [])
    ]
    if not rows:
        return []
    head = [
        "## Models loaded (models.json)",
        "",
        "| system | role | weights | dtype | device |",
        "|---|---|---|---|---|",
    ]
    return [*head, *rows, ""]


def _fmt(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def markdown_summary(ctx: Any, summary: Any, data: dict[str, Any]) -> str:
    """A short Markdown report: accuracy, then pairs (κ with CI, error overlap vs chance, McNemar q)."""
    lines = [f"# casceq run `{ctx.cfg.name}`", "", f"Config hash `{ctx.cfg.hash()[:12]}`.", ""]
    if summary.failed:
        lines += ["## Failed systems", ""] + [f"- **{k}**: {v}" for k, v in summary.failed.items()] + [""]
    lines += input_failure_lines(summary)
    from casceq.run.pairing import pairing_markdown

    lines += pairing_markdown(getattr(summary, "pairing", None))
    lines += models_lines(ctx.out)
    lines += [
        "## Accuracy (95% Wilson CI, item-aware)",
        "",
        "| system | task | condition | items / clips | accuracy | CI |",
        "|---|---|---|---|---|---|",
    ]
    for a in data["accuracy"]:
        lo, hi = a["ci"]
        lines.append(
            f"| {a['system']} | {a['task']} | {a['condition']} | {a['n_items']} / {a['n_clips']} | {_fmt(a['accuracy'])} | [{_fmt(lo)}, {_fmt(hi)}] |"
        )
    lines += [
        "",
        "## Pairs",
        "",
        "| a | b | task | condition | items / clips | κ | κ CI | overlap | chance | McNemar p | q | matched |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in data["pairs"]:
        lo, hi = p["kappa_ci"]
        lines.append(
            f"| {p['a']} | {p['b']} | {p['task']} | {p['condition']} | {p['n_items']} / {p['n_clips']} | {_fmt(p['kappa'])} | "
            f"[{_fmt(lo)}, {_fmt(hi)}] | {_fmt(p['overlap'])} | {_fmt(p['overlap_chance'])} | "
            f"{_fmt(p['mcnemar_p'], 4)} | {_fmt(p['q_value'], 4)} | {'yes' if p['matched'] else ''} |"
        )
    return "\n".join(lines) + "\n"
