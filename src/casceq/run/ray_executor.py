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
from collections.abc import Sequence
from typing import Any


def _run_group(cfg_dict: dict[str, Any], out: str, limit: int | None, units: list[tuple[str, str, str]]):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from casceq.run.calibrate import calibrate_run
    from casceq.run.config import parse_config
    from casceq.run.runner import RunContext, Unit, run_unit
    from casceq.run.store import Store

    cfg = parse_config(_to_toml_shape(cfg_dict))
    systems = sorted({u[0] for u in units})
    ctx = RunContext(cfg, Path(out), limit=limit, only_systems=systems)
    calibrate_run(ctx)  # loads the offsets the driver saved
    results: list[tuple[int, int, str | None]] = []
    with Store(Path(out) / "store.sqlite") as store:
        for s, t, c in units:
            try:
                w, sk = run_unit(ctx, Unit(s, t, c), store)
                results.append((w, sk, None))
            except Exception as exc:  # reported per unit, other units go on
                results.append((0, 0, f"{type(exc).__name__}: {exc}"))
    return results


def _to_toml_shape(d: dict[str, Any]) -> dict[str, Any]:
    """Turn ``ExperimentConfig.to_dict()`` back into the TOML-shaped dict ``parse_config`` validates."""
    out = {k: v for k, v in d.items() if k not in ("systems", "tasks")}
    out["systems"] = [{k: v for k, v in s.items() if v is not None} for s in d["systems"]]
    out["tasks"] = {
        t["name"]: {k: v for k, v in t.items() if k != "name" and v is not None} for t in d["tasks"]
    }
    for key in ("voices", "conditions"):
        out[key] = list(out[key])
    return out


def task_cpus(ray: Any) -> int:
    """CPUs each Ray task reserves: the driver's thread count, at most the largest node's CPUs."""
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    nodes = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive", True)]
    largest = max(nodes, default=0)
    return max(1, min(threads, largest) if largest > 0 else threads)


def run_units_ray(
    ctx: Any, units: Sequence[Any], address: str | None = None
) -> list[tuple[int, int, str | None]]:
    """Run ``units`` as Ray tasks (one per system); returns (written, skipped, error) per unit, in order."""
    from casceq.errors import require

    ray = require("ray", "the Ray executor", extra="ray")
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=task_cpus(ray))(_run_group)
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
