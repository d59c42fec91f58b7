"""The trained speech LLM against its matched cascade on the demo's clean items: config and accuracy table.

``eval_config`` builds the experiment (``eval_config_toml``: the same as a TOML file for ``casceq run``): the
demo's tasks, items (seed, n), first two default voices and the clean condition; the matched cascade Cascade-S (Whisper base -> the default backbone,
score mode, held-out calibration) with the backbone's default prompt settings (``DEFAULT_LLM_SETTINGS``: the
prompt the shipped speech LLM reads), the text ceiling, and the speech LLM. ``accuracy_table`` reads the run
back: accuracy per system and task with 95% Wilson intervals; ``accuracy_gaps`` the paired accuracy gaps.
``casceq train evaluate`` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casceq.audio.tts import DEFAULT_VOICES
from casceq.run.config import ExperimentConfig, SystemSpec
from casceq.systems.llm.bundled import DEFAULT_BACKBONE, DEFAULT_LLM_SETTINGS


@dataclass(frozen=True)
class AccuracyRow:
    """Accuracy of one system on one task.

    Attributes:
        system: System name.
        task: Task name.
        n: Predictions (items x voices).
        correct: Correct predictions.
        accuracy: correct / n.
        low: Lower end of the 95% Wilson interval (item-clustered: voices of one item are one unit).
        high: Upper end of the 95% Wilson interval.
        labels: Predicted-label counts (tiny models collapse onto one label: always look).
    """

    system: str
    task: str
    n: int
    correct: int
    accuracy: float
    low: float
    high: float
    labels: dict[str, int]


EVAL_N = 60
"""Items per task of the evaluation (x 2 voices = 120 clips per task; docs/speech_llm_training.md)."""


EVAL_COMMENT = "Speech LLM vs its matched cascade on the demo's clean items (casceq.train.evaluate)."
"""First line of the ``evaluation.toml`` ``casceq train evaluate`` writes."""


def eval_config(model: str = "ultravox-native:bundled", n: int | None = None) -> ExperimentConfig:
    """The evaluation experiment for the speech LLM ``model`` (a ``make_speech_llm`` spec)."""
    n = n or EVAL_N
    shots = {t: s.few_shot for t, s in DEFAULT_LLM_SETTINGS.items() if t in ("sst2", "ag_news")}
    settings = {"few_shot": shots}
    systems = [
        SystemSpec.cascade("Cascade-S", "faster-whisper:base", DEFAULT_BACKBONE, settings=settings),
        SystemSpec.text("Text", DEFAULT_BACKBONE, settings=settings),
        SystemSpec.speech_llm("Speech-LLM", model, backbone=DEFAULT_BACKBONE),
    ]
    return ExperimentConfig.build(
        "speech-llm-eval",
        systems,
        {"sst2": n, "ag_news": n},
        seed=0,
        batch_size=8,
        answer_mode="score",
        calibration="heldout",
        calibration_n=64,
        voices=tuple(DEFAULT_VOICES[:2]),
        conditions=("clean",),
    )


def eval_config_toml(model: str = "ultravox-native:bundled", n: int | None = None) -> str:
    """The evaluation experiment as a ``casceq run`` TOML file (the run folder's ``evaluation.toml``)."""
    return eval_config(model, n).to_toml(EVAL_COMMENT)


def _item(p: Any) -> str:
    """The item of a prediction: its ``item``, else its example id before "@" (the voices of one example)."""
    return str(getattr(p, "item", None) or p.example_id.split("@")[0])


def accuracy_table(run_dirs: Sequence[str | Path], condition: str = "clean") -> list[AccuracyRow]:
    """Accuracy with 95% Wilson intervals per (system, task) of the runs' predictions under ``condition``.

    The interval is item-clustered (``casceq.stats.cluster.clustered_proportion_ci``): the voices of one item
    are not independent evidence.
    """
    from collections import Counter

    from casceq.io.interchange import read_predictions
    from casceq.stats.cluster import clustered_proportion_ci, item_index, per_item_sums

    preds = [p for p in read_predictions([str(d) for d in run_dirs]) if p.condition == condition]
    groups: dict[tuple[str, str], list[object]] = {}
    for p in preds:
        groups.setdefault((p.system, p.task), []).append(p)
    rows = []
    for (system, task), ps in sorted(groups.items()):
        n = len(ps)
        right = [int(bool(getattr(p, "correct", False))) for p in ps]
        k = sum(right)
        clusters, _ = item_index([_item(p) for p in ps])
        x, clips = per_item_sums([right, [1] * n], clusters)
        lo, hi = clustered_proportion_ci(x, clips)
        labels = Counter(str(getattr(p, "label", "")) for p in ps)
        rows.append(
            AccuracyRow(system, task, n, k, k / n, float(lo), float(hi), dict(sorted(labels.items())))
        )
    return rows


@dataclass(frozen=True)
class AccuracyGap:
    """Accuracy of ``system`` minus that of ``reference`` on the clips both answered, with a paired bootstrap CI.

    Attributes:
        system: The system (e.g. the speech LLM).
        reference: The system it is measured against (e.g. its matched cascade).
        task: Task name.
        n: Clips answered by both.
        gap: accuracy(system) - accuracy(reference) on those clips.
        low: Lower end of the 95% paired bootstrap interval (percentile).
        high: Upper end.
    """

    system: str
    reference: str
    task: str
    n: int
    gap: float
    low: float
    high: float


def accuracy_gaps(
    run_dirs: Sequence[str | Path],
    system: str,
    reference: str,
    condition: str = "clean",
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[AccuracyGap]:
    """Per task, accuracy(system) - accuracy(reference) over the clips (example ids) both answered.

    The interval resamples items with replacement, every clip (voice) of a drawn item with it and the same draw
    for both systems (``casceq.stats.cluster.cluster_bootstrap_weights``), so it is the interval of a paired
    difference with the item as the unit; with one clip per item it is the clip bootstrap.
    """
    import numpy as np

    from casceq.io.interchange import read_predictions
    from casceq.stats.agreement import percentile_interval
    from casceq.stats.cluster import cluster_bootstrap_weights, item_index

    preds = [p for p in read_predictions([str(d) for d in run_dirs]) if p.condition == condition]
    by: dict[tuple[str, str], dict[str, bool]] = {}
    items: dict[str, str] = {}
    for p in preds:
        if p.system in (system, reference):
            by.setdefault((p.system, p.task), {})[p.example_id] = bool(p.correct)
            items.setdefault(p.example_id, _item(p))
    out = []
    for task in sorted({t for _, t in by}):
        a, b = by.get((system, task), {}), by.get((reference, task), {})
        ids = sorted(set(a) & set(b))
        if not ids:
            continue
        diff = np.array([float(a[i]) - float(b[i]) for i in ids])
        w = cluster_bootstrap_weights(item_index([items[i] for i in ids])[0], n_resamples, seed).astype(float)
        draws = (w @ diff) / w.sum(axis=1)
        lo, hi = percentile_interval(draws[:, None])[0]
        out.append(AccuracyGap(system, reference, task, len(ids), float(diff.mean()), float(lo), float(hi)))
    return out


def markdown(rows: Sequence[AccuracyRow]) -> str:
    """The table as Markdown (accuracy [95% Wilson CI], n, predicted labels)."""
    lines = ["| system | task | accuracy [95% CI] | n | predicted labels |", "|---|---|---|---|---|"]
    for r in rows:
        labels = ", ".join(f"{k} {v}" for k, v in r.labels.items())
        lines.append(
            f"| {r.system} | {r.task} | {r.accuracy:.3f} [{r.low:.3f}, {r.high:.3f}] | {r.n} | {labels} |"
        )
    return "\n".join(lines) + "\n"


def plot_losses(out: str | Path, png: str | Path) -> Path:
    """Plot the pre-alignment CTC loss and the distillation loss parts of a training folder into ``png``.

    Raises:
        MissingDependency: matplotlib is not installed (extra ``report``).
    """
    import json

    from casceq.errors import MissingDependency

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependency("matplotlib", "the loss curve plot", extra="report") from exc
    folder = Path(out)

    def rows(name: str) -> list[dict[str, float]]:
        path = folder / name
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []

    align, distill = rows("align_log.jsonl"), rows("log.jsonl")
    if distill and "task" in distill[0]:  # the matched recipe logs each step's task (or "asr")
        return _plot_matched(distill, png, plt)
    if align and not distill:  # a CTC head trained by the CTC stage alone: one panel, raw and smoothed
        return _plot_ctc_only(align, png, plt)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if align:
        axes[0].plot([r["step"] for r in align], [r["ctc"] for r in align], lw=0.8)
    axes[0].set(
        title="1. embedding-CTC pre-alignment", xlabel="step (16 clips)", ylabel="CTC loss (nats / token)"
    )
    for key, label in (("kl", "KL(teacher || student)"), ("ce", "transcript CE")):
        pts = [(r["step"], r[key]) for r in distill if r.get(f"n_{key}", 1)]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), lw=0.8, marker=".", label=label)
    axes[1].set(title="2. distillation through the frozen backbone", xlabel="step (8 rows)", ylabel="loss")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)


def _plot_ctc_only(align: Sequence[dict[str, float]], png: str | Path, plt: Any) -> Path:
    """The CTC loss of a ``"ctc"`` head per step (16 clips), raw and a trailing mean over 50 steps, log scale."""
    steps, ctc = [r["step"] for r in align], [r["ctc"] for r in align]
    fig, ax = plt.subplots(1, 1, figsize=(6.5, 3.6))
    ax.plot(steps, ctc, lw=0.5, alpha=0.35, label="per step")
    ax.plot(steps, _smooth(ctc, 50), lw=1.2, label="mean of the last 50 steps")
    ax.set(
        title="CTC head over the backbone's tokens",
        xlabel="step (16 clips)",
        ylabel="CTC loss (nats / token)",
    )
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)


def _smooth(values: Sequence[float], k: int = 25) -> list[float]:
    """Trailing mean over ``k`` values (the per-step losses of 8 rows are noisy)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - k] if i >= k else 0.0)
        out.append(acc / min(i + 1, k))
    return out


def _plot_matched(log: Sequence[dict[str, float]], png: str | Path, plt: object) -> Path:
    """Loss curves of the matched recipe: hidden-state term (1.0 = the teacher's mean state), KL, transcript CE."""
    asr = [r for r in log if r["task"] == "asr"]
    fig, axes = plt.subplots(1, 3 if asr else 2, figsize=(15 if asr else 10, 3.6))  # type: ignore[attr-defined]
    for task in sorted({str(r["task"]) for r in log} - {"asr"}):
        rows = [r for r in log if r["task"] == task]
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, _smooth([r["hidden"] for r in rows]), lw=1, label=task)
        axes[1].plot(steps, _smooth([r["kl"] for r in rows]), lw=1, label=task)
    axes[0].axhline(1.0, color="grey", ls=":", lw=1, label="teacher's mean state")
    axes[0].set_yscale("log")
    axes[0].set(
        title="suffix hidden states (standardised MSE)", xlabel="step (8 clips)", ylabel="trailing mean of 25"
    )
    axes[1].set(title="KL(teacher || student), answer position", xlabel="step (8 clips)", ylabel="nats")
    if asr:
        axes[2].plot([r["step"] for r in asr], _smooth([r["ce"] for r in asr]), lw=1, color="C2")
        axes[2].set(
            title="transcript CE (sampled vocabulary)", xlabel="step (8 clips)", ylabel="nats / token"
        )
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)  # type: ignore[attr-defined]
    return Path(png)
