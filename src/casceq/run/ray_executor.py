"""Distribute a run's units (system, task, condition) over a Ray cluster.

Each Ray task rebuilds the run context from the config (cheap: audio is synthesised by the driver before
dispatch, examples are reloaded from files), loads only the models its unit needs, and writes to the same
SQLite store (WAL; one transaction per batch, so concurrent writers interleave safely). Units of one system
are grouped into one Ray task so that a model is loaded once per worker, not once per unit. For a
multi-machine cluster the run folder must be on a shared file system.

Each Ray task reserves as many CPUs as the driver computes with (``OMP_NUM_THREADS``, else its core count,
capped at the largest node), and Ray gives a task ``OMP_NUM_THREADS`` equal to its reservation, so workers
compute with the driver's thread count. That matters for results, not only speed: on an AVX2-only CPU (AMD
EPYC, 3 Dec 2026) faster-whisper tiny.en transcribed an espeak clip as "This mask, Queen is campy fun ..." with
``OMP_NUM_THREADS=1`` (Ray's default for a 1-CPU task) and "This mask queen is campy fun ..." with it unset or
2, so a Ray run with 1-CPU tasks disagreed with the local run on 2 of 8 transcripts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from casceq.errors import require


def task_cpus(ray: Any) -> int:
    """CPUs each Ray task reserves: the driver's thread count, at most the largest node's CPUs."""
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    nodes = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive", True)]
    largest = max(nodes, default=0)
    return max(1, min(threads, largest) if largest > 0 else threads)


def run_units_ray(
    ctx: Any, units: Sequence[Any], work: Callable[..., Any], address: str | None = None
) -> list[tuple[int, int, str | None]]:
    """Run ``units`` as Ray tasks (one per system); returns (written, skipped, error) per unit, in order.

    ``work(cfg_dict, out, limit, [(system, task, condition), ...])`` runs in a worker and returns one
    (written, skipped, error) per unit: the runner passes its own ``run_unit_group``, so this module needs
    nothing from the runner.
    """
    ray = require("ray", "the Ray executor", extra="ray")
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=task_cpus(ray))(work)
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        groups.setdefault(u.system, []).append(i)
    futures = {
        name: remote.remote(
            ctx.cfg.to_dict(),
            str(ctx.out),
            ctx.limit,
            [(units[i].system, units[i].task, units[i].condition) for i in idx],
        )
        for name, idx in groups.items()
    }
    out: list[tuple[int, int, str | None]] = [(0, 0, None)] * len(units)
    for name, fut in futures.items():
        for i, r in zip(groups[name], ray.get(fut), strict=True):
            out[i] = r
    return out
