"""Run an experiment: systems × tasks × conditions into a run folder, batched and resumable.

A run folder holds ``config.toml``/``config.json`` with the config hash, ``pairing.json`` (each speech LLM's
backbone and its matched/mismatched systems), ``models.json`` (resolved dtype/device of each loaded model),
``store.sqlite`` (predictions, one row per (run, system, task, condition, example)), ``predictions.jsonl``
(interchange format), ``compare.json`` and ``report.md``. Every prediction row carries a cache key covering the system spec, the example and its audio
under the condition; a second start of the same run skips every row whose key is already stored, and loads no
model when nothing is left to do.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import CasceqError, InputError, LeakageError
from casceq.io.store import InputFailure, Store
from casceq.redact import redact
from casceq.run.asr_cache import TranscriptCache
from casceq.run.build import build_system
from casceq.run.calibrate import calibrate_run
from casceq.run.config import ExperimentConfig, parse_config
from casceq.run.items import Item, load_item_audio, natural_items, spoken_items, text_items
from casceq.run.leakage import check_not_trained_on
from casceq.run.models import loaded_models, write_models
from casceq.run.outputs import outputs_current, write_outputs
from casceq.run.pairing import run_pairing, write_pairing
from casceq.run.ray_executor import run_units_ray
from casceq.tasks import get_task, load_examples
from casceq.tasks.base import Task
from casceq.types import CLEAN, Prediction

CONFIG_JSON = "config.json"
STORE = "store.sqlite"


@dataclass(frozen=True)
class InputFailureGroup:
    """Input failures of one (system, task, condition): examples left out of its statistics.

    Attributes:
        failed: Examples whose input could not be used.
        total: Examples of the task in the run.
        errors: The first few failures (``path: reason``), for the message.
    """

    system: str
    task: str
    condition: str
    failed: int
    total: int
    errors: tuple[str, ...] = ()

    @property
    def share(self) -> float:
        """Failed share of the group's examples."""
        return self.failed / self.total if self.total else 1.0


@dataclass
class RunSummary:
    """What a run did: rows written per system, failures by system, input failures, wall time."""

    run_dir: Path
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    input_failures: list[InputFailureGroup] = field(default_factory=list)
    seconds: float = 0.0
    pairing: Any = None  # run.pairing.Pairing: each speech LLM's registry backbone and matched systems
    compare: Any = None  # stats.results.CompareResult: this start's statistics (None: outputs were current)

    def worst_input_failure_share(self) -> float:
        """The largest failed share of any (system, task, condition); 0 when every input was usable."""
        return max((g.share for g in self.input_failures), default=0.0)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def open_run_dir(cfg: ExperimentConfig, out: Path) -> None:
    """Create the run folder or check that it holds the same config (refuse a different one).

    A run folder is recognised by its ``config.json`` holding a config hash. Anything else that is not empty
    (a user's folder, a file) is refused: the run would overwrite its ``report.md`` and ``compare.json``. Only
    ``.toml`` files may be there (the run's own config, written by ``casceq demo``).
    """
    if out.exists() and not out.is_dir():
        raise CasceqError(f"--out {out} is a file, not a folder: name a new or empty folder, or a run folder")
    out.mkdir(parents=True, exist_ok=True)
    meta = out / CONFIG_JSON
    # .toml files may sit beside a new run (its own config: `casceq demo`, `casceq train evaluate`); a run
    # never writes one, so they are safe
    foreign = [p for p in out.iterdir() if not (p.suffix == ".toml" and p.is_file())]
    if not meta.exists() and foreign:
        raise CasceqError(
            f"--out {out} is not empty and is not a casceq run folder (no config.json): its files would be "
            "overwritten; name a new or empty folder"
        )
    if meta.exists():
        old = _read_run_meta(meta)
        if old.get("hash") != cfg.hash():
            raise CasceqError(
                f"{out} holds a run of a different config (hash {old.get('hash', '?')[:12]} != {cfg.hash()[:12]}); "
                "use another --out folder"
            )
        return
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hash": cfg.hash(), "config": cfg.to_dict()}, indent=2))
    tmp.replace(meta)


def _read_run_meta(meta: Path) -> dict[str, Any]:
    """A run folder's ``config.json``; anything without a casceq config hash is refused by name."""
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CasceqError(f"{meta} is not a casceq run's config ({exc}): use another --out folder") from None
    if not isinstance(old, dict) or not isinstance(old.get("hash"), str) or "config" not in old:
        raise CasceqError(f"{meta} is not a casceq run's config (no config hash): use another --out folder")
    return old


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def predict_batch_safely(system: Any, task: Task, condition: str, items: Sequence[Item], audios: list, trs):  # type: ignore[no-untyped-def]
    """Predict a batch; on out-of-memory halve the batch and retry (down to single items)."""
    exs = [it.example for it in items]
    try:
        return system.predict(task, condition, exs, audios, trs)
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc) or len(items) == 1:
            raise
        h = len(items) // 2
        return predict_batch_safely(
            system, task, condition, items[:h], audios[:h], None if trs is None else trs[:h]
        ) + predict_batch_safely(
            system, task, condition, items[h:], audios[h:], None if trs is None else trs[h:]
        )


def input_failure(system: Any, task: Task, condition: str, item: Item, reason: str) -> InputFailure:
    """The record of an example whose input could not be used: kept apart from the model's answers."""
    return InputFailure(system.name, task.name, condition, item.example.id, redact(reason))


@dataclass(frozen=True)
class Unit:
    """One shard of work: a system on a task under a condition (what the Ray executor distributes)."""

    system: str
    task: str
    condition: str


class RunContext:
    """Everything a unit needs, rebuilt cheaply in each worker: config, items per task, systems, offsets."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: Path,
        *,
        limit: int | None = None,
        only_systems: Sequence[str] | None = None,
        only_tasks: Sequence[str] | None = None,
        jobs: int = 1,
    ) -> None:
        self.cfg, self.out, self.limit, self.jobs = cfg, out, limit, jobs
        unknown = set(only_systems or ()) - {s.name for s in cfg.systems}
        if unknown:
            raise CasceqError(f"--only-systems: unknown systems {sorted(unknown)}")
        self.system_specs = [s for s in cfg.systems if not only_systems or s.name in only_systems]
        self.task_specs = [t for t in cfg.tasks if not only_tasks or t.name in only_tasks]
        if only_tasks and not self.task_specs:
            raise CasceqError(f"--only-tasks: none of {list(only_tasks)} is in the config")
        self.systems = {s.name: build_system(s, cfg) for s in self.system_specs}
        self.needs_audio = any(s.kind != "text" for s in cfg.systems)
        self._items: dict[str, list[Item]] = {}
        self._examples: dict[str, list[Any]] = {}
        self.transcripts: Any = None  # TranscriptCache, opened by the first cascade unit

    def examples(self, task_name: str) -> list[Any]:
        """The task's evaluated examples (loaded on first call, cached after; no audio is made)."""
        if task_name not in self._examples:
            spec = next(t for t in self.task_specs if t.name == task_name)
            exs = load_examples(
                task_name, n=spec.n, seed=self.cfg.seed, split=spec.split, data_dir=spec.data_dir
            )
            self._examples[task_name] = exs[: self.limit] if self.limit is not None else exs
        return self._examples[task_name]

    def items(self, task_name: str) -> list[Item]:
        """The task's items (examples loaded and audio synthesised on first call, cached after)."""
        if task_name not in self._items:
            exs = self.examples(task_name)
            if not self.needs_audio:
                self._items[task_name] = text_items(exs)
            elif exs and exs[0].audio is not None:
                self._items[task_name] = natural_items(exs)
            else:
                if not self.cfg.voices:
                    raise CasceqError(f"task {task_name} needs TTS voices (set voices = [...] in the config)")
                self._items[task_name] = spoken_items(
                    exs, self.cfg.voices, self.out / "audio" / task_name, self.jobs
                )
        return self._items[task_name]

    def conditions(self) -> tuple[str, ...]:
        """Conditions of this run (text-only runs have only ``clean``)."""
        return self.cfg.conditions if self.needs_audio else (CLEAN,)

    def units(self) -> list[Unit]:
        """All units, text systems first (cheap), then by task and condition."""
        order = {"text": 0, "cascade": 1, "speech_llm": 2}
        specs = sorted(self.system_specs, key=lambda s: order[s.kind])
        return [Unit(s.name, t.name, c) for t in self.task_specs for c in self.conditions() for s in specs]


def _row_key(system_key: str, item: Item, condition: str, seed: int, kind: str) -> str:
    ex = item.example
    if kind == "text":  # text systems see neither audio nor condition
        return _key(system_key, ex.task, ex.text, ex.label, list(ex.choices))
    return _key(system_key, ex.task, ex.text, ex.label, list(ex.choices), item.audio_key, condition, seed)


def run_unit(ctx: RunContext, unit: Unit, store: Any, progress: Any = None) -> tuple[int, int]:
    """Do the pending part of one unit; returns (rows written, rows already done)."""
    system = ctx.systems[unit.system]
    task = get_task(unit.task)
    items = ctx.items(unit.task)
    run = ctx.cfg.name
    skey = system.cache_key() + _key(system.offsets.get(task.name, np.zeros(0)).tolist())
    keys = {it.example.id: _row_key(skey, it, unit.condition, ctx.cfg.seed, system.kind) for it in items}
    done = store.done(run, system.name, task.name, unit.condition)
    pending = [it for it in items if done.get(it.example.id) != keys[it.example.id]]
    if not pending:
        return 0, len(items)
    written = 0
    if system.kind == "text":
        written = _run_text_unit(ctx, unit, store, system, task, pending, keys, progress)
        return written, len(items) - len(pending)
    pending.sort(key=lambda it: it.duration)
    bs = ctx.cfg.batch_size
    cache = ctx_transcripts(ctx) if system.kind == "cascade" else None
    asr_spec = system.spec.get("asr")
    for i in range(0, len(pending), bs):
        batch = pending[i : i + bs]
        rows: list[Prediction] = []
        good: list[Item] = []
        audios: list[np.ndarray] = []
        failures: list[InputFailure] = []
        for it in batch:
            try:
                audios.append(load_item_audio_checked(it, unit.condition, ctx.cfg.seed))
                good.append(it)
            except InputError as exc:
                failures.append(input_failure(system, task, unit.condition, it, str(exc)))
        store.record_input_failures(run, failures)
        trs: list[str] | None = None
        asr_secs: dict[str, float] = {}
        if good and cache is not None:
            akeys = [_key(it.audio_key, unit.condition, ctx.cfg.seed) for it in good]
            hit = cache.get(asr_spec, akeys)
            missing = [j for j, k in enumerate(akeys) if k not in hit]
            if missing:
                texts, secs = system.transcribe([audios[j] for j in missing])
                per = secs / len(missing)
                new = [(akeys[j], t, per) for j, t in zip(missing, texts, strict=True)]
                cache.put(asr_spec, new)
                hit.update({k: (t, s) for k, t, s in new})
            trs = [hit[k][0] for k in akeys]
            asr_secs = {it.example.id: hit[k][1] for it, k in zip(good, akeys, strict=True)}
        if good:
            preds = predict_batch_safely(system, task, unit.condition, good, audios, trs)
            rows += [replace(p, seconds=p.seconds + asr_secs.get(p.example_id, 0.0)) for p in preds]
        if rows:
            store.write_batch(run, rows, [keys[p.example_id] for p in rows])
        written += len(rows)
        if progress is not None:
            progress(len(batch))
    return written, len(items) - len(pending)


def _run_text_unit(ctx, unit, store, system, task, pending, keys, progress) -> int:  # type: ignore[no-untyped-def]
    """Text systems answer each base example once and copy the answer to its voices and conditions."""
    run = ctx.cfg.name
    known: dict[str, Prediction] = {}
    for cond in ctx.conditions():
        if cond == unit.condition:
            continue
        done = store.done(run, system.name, task.name, cond)
        same = {eid for eid, k in done.items() if keys.get(eid) == k}
        if same:
            for p in store.predictions(run=run, systems=[system.name], tasks=[task.name], conditions=[cond]):
                if p.example_id in same:
                    base = _base_of(p.example_id)
                    known.setdefault(base, p)
    bases: dict[str, Item] = {}
    for it in pending:
        if it.base_id not in known:
            bases.setdefault(it.base_id, it)
    todo = sorted(bases.values(), key=lambda it: len(it.example.text))
    bs = ctx.cfg.batch_size
    written = 0
    by_base: dict[str, list[Item]] = {}
    for it in pending:
        by_base.setdefault(it.base_id, []).append(it)

    def emit(base: str, p: Prediction) -> list[Prediction]:
        n = len(by_base[base])
        return [
            replace(p, example_id=it.example.id, condition=unit.condition, seconds=p.seconds / n)
            for it in by_base[base]
        ]

    for i in range(0, len(todo), bs):
        batch = todo[i : i + bs]
        preds = predict_batch_safely(system, task, unit.condition, batch, [None] * len(batch), None)
        rows = [r for it, p in zip(batch, preds, strict=True) for r in emit(it.base_id, p)]
        store.write_batch(run, rows, [keys[r.example_id] for r in rows])
        written += len(rows)
        if progress is not None:
            progress(sum(len(by_base[it.base_id]) for it in batch))
    rest = [r for base, p in known.items() if base in by_base for r in emit(base, p)]
    if rest:
        store.write_batch(run, rest, [keys[r.example_id] for r in rest])
        written += len(rest)
        if progress is not None:
            progress(len(rest))
    return written


def _base_of(example_id: str) -> str:
    return example_id.split("@", 1)[0]


def load_item_audio_checked(item: Item, condition: str, seed: int) -> np.ndarray:
    """Load an item's audio; unreadable, empty or non-finite audio raises InputError naming the file."""
    try:
        wav = load_item_audio(item, condition, seed)
    except InputError:
        raise
    except Exception as exc:
        path = item.audio.path if item.audio else "?"
        raise InputError(f"unreadable audio ({type(exc).__name__}: {exc})", path=path) from None
    if wav.size == 0 or not np.isfinite(wav).all():
        raise InputError("empty or non-finite audio", path=item.audio.path if item.audio else None)
    return wav


def ctx_transcripts(ctx: RunContext) -> Any:
    """The run's transcript cache, opened once per context on the context's own store file."""
    if ctx.transcripts is None:
        ctx.transcripts = TranscriptCache(ctx.out / STORE)
    return ctx.transcripts


def run_experiment(
    cfg: ExperimentConfig,
    out: Path,
    *,
    limit: int | None = None,
    only_systems: Sequence[str] | None = None,
    only_tasks: Sequence[str] | None = None,
    executor: str = "local",
    show_progress: bool = True,
    jobs: int = 1,
) -> RunSummary:
    """Run (or resume) an experiment into ``out``; then write the interchange file, compare.json and report."""
    t0 = time.perf_counter()
    open_run_dir(cfg, out)
    ctx = RunContext(cfg, out, limit=limit, only_systems=only_systems, only_tasks=only_tasks, jobs=jobs)
    summary = RunSummary(out, pairing=start_pairing(cfg, out))
    for t in ctx.task_specs:  # a speech LLM must not be evaluated on its projector's training text
        for spec in ctx.system_specs:  # (checked on the examples, before any audio is made)
            if spec.kind == "speech_llm":
                check_not_trained_on(spec.model, ctx.examples(t.name))
    for t in ctx.task_specs:  # synthesise (or find) all audio first: workers then only read it
        ctx.items(t.name)
    with Store(out / STORE) as store:
        store.register_run(cfg.name, cfg.to_dict(), cfg.hash())
        for s in ctx.system_specs:
            sys_ = ctx.systems[s.name]
            store.register_system(cfg.name, s.name, sys_.backbone, s.kind, sys_.spec)
            store.relabel_backbone(cfg.name, s.name, sys_.backbone)  # one id per system across starts
        try:
            calibrate_run(ctx)
        except LeakageError:  # fitting on evaluated items or shots: stop, never answer with those offsets
            raise
        except Exception as exc:  # a backbone that fails to load is reported per system below
            print(redact(f"calibration skipped: {type(exc).__name__}: {exc}"))
        units = ctx.units()
        if executor == "ray":
            results = run_units_ray(ctx, units, run_unit_group)
            for unit, (w, sk, err) in zip(units, results, strict=True):
                _tally(summary, unit, w, sk, err)
        else:
            _run_local(ctx, units, store, summary, show_progress)
        summary.input_failures = input_failure_groups(ctx, store.input_failures(cfg.name))
    write_models(out, loaded_models(ctx.systems))  # resolved dtype/device of what this start loaded

    if sum(summary.written.values()) or summary.input_failures or not outputs_current(out):
        summary.compare = write_outputs(ctx, summary)
    summary.seconds = time.perf_counter() - t0
    _record_failures(out, summary)
    return summary


def start_pairing(cfg: ExperimentConfig, out: Path) -> Any:
    """Record the run's pairing in ``pairing.json`` and print it with its warnings (runs with speech LLMs)."""
    pairing = run_pairing(cfg)
    write_pairing(out, pairing)
    for line in pairing.lines():
        print(line)
    return pairing


ERRORS_SHOWN = 3
"""Input failures named per (system, task, condition) in the summary; the store holds all of them."""


def input_failure_groups(ctx: RunContext, failures: Sequence[InputFailure]) -> list[InputFailureGroup]:
    """Count the run's input failures per (system, task, condition) of this start's systems and tasks."""
    systems, tasks = set(ctx.systems), {t.name for t in ctx.task_specs}
    groups: dict[tuple[str, str, str], list[InputFailure]] = {}
    for f in failures:
        if f.system in systems and f.task in tasks:
            groups.setdefault((f.system, f.task, f.condition), []).append(f)
    return [
        InputFailureGroup(
            s,
            t,
            c,
            len(fs),
            len(ctx.items(t)),
            tuple(f"{f.example_id}: {f.error}" for f in fs[:ERRORS_SHOWN]),
        )
        for (s, t, c), fs in sorted(groups.items())
    ]


def _record_failures(out: Path, summary: RunSummary) -> None:
    """Append this start's failures to ``failures.jsonl`` (what failed, when); a later start retries them."""
    if not summary.failed:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(out / "failures.jsonl", "a", encoding="utf-8") as fh:
        for system, error in summary.failed.items():
            fh.write(json.dumps({"time": stamp, "system": system, "error": error}) + "\n")


def _tally(summary: RunSummary, unit: Unit, written: int, skipped: int, err: str | None) -> None:
    summary.written[unit.system] = summary.written.get(unit.system, 0) + written
    summary.skipped[unit.system] = summary.skipped.get(unit.system, 0) + skipped
    if err:  # every failure passes here before it is printed, reported or written to failures.jsonl
        summary.failed[unit.system] = redact(err)


def _run_local(ctx: RunContext, units: list[Unit], store: Any, summary: RunSummary, show: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    total = sum(len(ctx.items(u.task)) for u in units)
    # markup=False: a description holds system names, which are text (a name like "sys[/]" is not rich markup).
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show, transient=False) as bar:
        overall = bar.add_task("all", total=total)
        for unit in units:
            if unit.system in summary.failed:
                bar.advance(overall, len(ctx.items(unit.task)))
                continue
            n = len(ctx.items(unit.task))
            tid = bar.add_task(f"{unit.system} · {unit.task} · {unit.condition}", total=n)

            def advance(k: int, tid: Any = tid) -> None:
                bar.advance(tid, k)
                bar.advance(overall, k)

            try:
                written, skipped = run_unit(ctx, unit, store, advance)
            except Exception as exc:  # a model that fails to load or crashes: name it, continue
                why = str(exc) if isinstance(exc, CasceqError) else f"{type(exc).__name__}: {exc}"
                _tally(summary, unit, 0, 0, why)
                bar.console.print(
                    Text.assemble((f"{unit.system} failed", "red"), f": {summary.failed[unit.system]}"),
                    "(other systems continue)",
                )
                continue
            bar.update(tid, completed=n, visible=written > 0)
            bar.advance(overall, skipped)  # the callback counted only the pending rows
            _tally(summary, unit, written, skipped, None)


# --- the Ray executor's worker side (casceq.run.ray_executor dispatches it) ------------------------------


def run_unit_group(
    cfg_dict: dict[str, Any], out: str, limit: int | None, units: list[tuple[str, str, str]]
) -> list[tuple[int, int, str | None]]:
    """A Ray worker's share of a run: rebuild the context from the config, run ``units``, one result each."""
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
