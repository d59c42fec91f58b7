"""Probe stage: linear probes (energy, pitch, CTC characters, bag of characters) per layer of a capture.

Writes ``probes.json`` (``ProbeResults``), ``table.md`` (the paper's Table 4 layout) and ``figure.png`` /
``figure.svg`` (Figure 4) into the output folder. The split is 80/20 by utterance (or a record field), seeded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from casceq.errors import MissingDependency
from casceq.mech.probes import PROBES, ProbeResults, run_probes
from casceq.mech.probes_report import probe_figure, probe_table

PROBES_FILE = "probes.json"


@dataclass(frozen=True)
class ProbeConfig:
    """One probe run (the options of ``casceq probe``).

    Attributes:
        capture: Capture folder.
        out: Output folder.
        probes: Probes to run.
        layers: Layers to probe (None: all captured).
        seed: Split and initialisation seed.
        split_by: ``utterance`` or a record field whose groups are held out whole.
        ctc_epochs: CTC probe training epochs (None: the library's default).
        threads: BLAS/torch threads (None: leave the process's setting).
        title: Figure title (None: the model spec).
        figure_optional: Skip the figure when matplotlib is missing (the numbers matter; ``casceq reproduce``).
    """

    capture: str
    out: str
    probes: tuple[str, ...] = PROBES
    layers: tuple[int, ...] | None = None
    seed: int = 0
    split_by: str = "utterance"
    ctc_epochs: int | None = None
    threads: int | None = None
    title: str | None = None
    figure_optional: bool = False


def read_probes(path: str | Path) -> ProbeResults:
    """Read a ``probes.json`` (a folder holding one, or the file)."""
    p = Path(path)
    p = p / PROBES_FILE if p.is_dir() else p
    return ProbeResults.from_json(p.read_text(encoding="utf-8"))


def run_probe(config: ProbeConfig, progress: Callable[[str], None] | None = None) -> ProbeResults:
    """Run the probes, write ``probes.json``, ``table.md`` and the figure; returns the results."""
    limiter = None
    if config.threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it BLAS uses its own default
            threadpool_limits = None
        import torch

        torch.set_num_threads(max(1, config.threads))
        limiter = threadpool_limits(config.threads) if threadpool_limits else None
    extra = {} if config.ctc_epochs is None else {"ctc_epochs": config.ctc_epochs}
    try:
        results = run_probes(
            config.capture,
            list(config.probes),
            layers=list(config.layers) if config.layers else None,
            seed=config.seed,
            split_by=config.split_by,
            progress=progress,
            **extra,
        )
    finally:
        if limiter is not None:
            limiter.unregister()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    table = probe_table(results)
    if config.figure_optional:  # casceq reproduce: probes.json last, so a folder holding it is complete
        (out / "table.md").write_text(table, encoding="utf-8")
        with contextlib.suppress(MissingDependency):  # the numbers matter; the figure is optional
            probe_figure(results, out / "figure", title=config.title)
        _atomic_text(out / PROBES_FILE, results.to_json())
    else:
        (out / PROBES_FILE).write_text(results.to_json(), encoding="utf-8")
        (out / "table.md").write_text(table, encoding="utf-8")
        probe_figure(results, out / "figure", title=config.title)
    return results


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
