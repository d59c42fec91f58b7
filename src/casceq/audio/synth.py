"""Spoken test sets: synthesise a task's examples with several voices, cached, resumable, with a manifest.

Layout of an output folder ``out``::

    out/manifest.jsonl              one ManifestEntry per (example, voice), sorted; rewritten atomically
    out/summary.json                the request, counts, skips (example_id, voice, reason), TTS version
    out/audio/<task>/<voice>/<example id>-<key[:16]>.flac   16 kHz mono FLAC

``key`` hashes (spoken text, voice, engine settings, TTS version[, seed for stochastic engines]), so a file that
exists is exactly the audio asked for: re-runs skip it, a killed run resumes where it stopped, and a change of
text normalisation or engine settings produces new files instead of silently reusing stale ones. Files are written
under a temporary name in the same folder, fsynced and renamed, so no half-written file ever has a final name.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casceq.audio.textnorm import spoken_text
from casceq.audio.tts import cache_key, get_voice
from casceq.audio.tts.base import TTSBackend
from casceq.audio.tts.manifest import (
    MANIFEST_NAME,
    SUMMARY_NAME,
    Manifest,
    ManifestEntry,
    SkipRecord,
    file_sha256,
    remove_stale_temp_files,
    write_flac_atomic,
)
from casceq.errors import CasceqError, InputError, MissingDependency, require
from casceq.tasks import canonical_name, load_examples
from casceq.types import Example

__all__ = [
    "MANIFEST_NAME",
    "SUMMARY_NAME",
    "Manifest",
    "ManifestEntry",
    "SkipRecord",
    "audio_relpath",
    "synthesize_examples",
    "synthesize_task",
]

AUDIO_DIR = "audio"
CHECKPOINT_EVERY = 25
"""Completed items between manifest checkpoints (a killed run keeps a manifest of what it finished)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class _Job:
    example: Example
    voice: str
    spoken: str
    rel: str


def audio_relpath(example: Example, voice: str, key: str) -> str:
    """Where one (example, voice) file lives, relative to the output folder (its name carries the cache key)."""
    safe = _UNSAFE.sub("_", example.id).strip("._") or "item"
    return f"{AUDIO_DIR}/{_UNSAFE.sub('_', example.task)}/{voice}/{safe}-{key[:16]}.flac"


def _plan(
    examples: Sequence[Example], backends: dict[str, TTSBackend], seed: int
) -> tuple[list[_Job], list[SkipRecord]]:
    jobs: list[_Job] = []
    skips: list[SkipRecord] = []
    seen: set[tuple[str, str]] = set()
    for ex in examples:
        if (ex.task, ex.id) in seen:
            raise InputError(f"duplicate example id {ex.id!r} in task {ex.task!r}")
        seen.add((ex.task, ex.id))
        spoken = spoken_text(ex.text, ex.task)
        for name, backend in backends.items():
            if not spoken:
                skips.append(SkipRecord(ex.id, name, "empty text after normalisation"))
                continue
            jobs.append(
                _Job(ex, name, spoken, audio_relpath(ex, name, cache_key(backend.info, spoken, seed)))
            )
    return jobs, skips


def _cached_entry(out: Path, job: _Job) -> ManifestEntry | None:
    dest = out / job.rel
    if not dest.exists():
        return None
    sf = require("soundfile", "Reading FLAC", extra="audio")
    try:
        info = sf.info(str(dest))
    except RuntimeError:
        dest.unlink(missing_ok=True)  # unreadable (damaged outside our atomic writes): synthesise again
        return None
    return _entry(job, info.frames / info.samplerate, int(info.samplerate), file_sha256(dest))


def _entry(job: _Job, duration: float, sr: int, sha: str) -> ManifestEntry:
    ex = job.example
    return ManifestEntry(ex.id, ex.task, job.voice, job.rel, round(duration, 4), sr, ex.text, job.spoken, sha)


def _check_voices(voices: Sequence[str]) -> dict[str, TTSBackend]:
    if not voices:
        raise InputError("no voices given")
    if len(set(voices)) != len(voices):
        raise InputError(f"voices repeated: {list(voices)}")
    backends = {v: get_voice(v) for v in voices}
    for b in backends.values():
        if not b.available():
            info = b.info
            if info.extra and info.offline:
                raise MissingDependency(info.requires, f"The voice {info.name!r}", info.extra)
            raise CasceqError(
                f"voice {info.name!r} cannot run here (needs {info.requires or info.engine}"
                f"{'' if info.offline else ' and internet access'})"
            )
    return backends


def synthesize_examples(
    examples: Sequence[Example],
    voices: Sequence[str],
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    jobs: int = 1,
    request: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Synthesise every example in every voice into ``out`` (skipping files already there) and write the manifest.

    Entries of earlier runs for other (task, example, voice) pairs stay in the manifest while their files exist,
    so voices can be added in later runs.

    Args:
        examples: Examples to speak (``text`` is normalised with :func:`spoken_text`).
        voices: Voice names (see ``casceq synth --list-voices``).
        out: Output folder.
        seed: Seed for stochastic engines (part of their cache key).
        jobs: Parallel synthesis threads (engines that are not thread-safe are serialised per voice).
        request: Extra fields recorded in the summary (the task, n, ...).
        progress: Called as ``progress(done, total)`` after each item.

    Returns:
        The manifest as written.

    Raises:
        InputError: Unknown or repeated voice, duplicate example ids.
        MissingDependency: A voice whose optional package is missing.
    """
    root = Path(out)
    backends = _check_voices(voices)
    root.mkdir(parents=True, exist_ok=True)
    if (root / AUDIO_DIR).is_dir():
        remove_stale_temp_files(root / AUDIO_DIR)
    plan, skips = _plan(examples, backends, seed)
    wanted = {(j.example.task, j.example.id, j.voice) for j in plan}
    kept = [
        e
        for e in Manifest.load(root).entries
        if (e.task, e.example_id, e.voice) not in wanted and (root / e.path).exists()
    ]
    done: list[ManifestEntry] = []
    req = {**(request or {}), "voices": list(voices), "seed": seed, "n_examples": len(examples)}
    locks = {v: threading.Lock() for v, b in backends.items() if not b.thread_safe}

    def snapshot() -> Manifest:
        entries = sorted([*kept, *done], key=lambda e: (e.task, e.example_id, e.voice))
        order = {v: i for i, v in enumerate(voices)}
        return Manifest(
            root, tuple(entries), tuple(sorted(skips, key=lambda s: (s.example_id, order[s.voice]))), req
        )

    def work(job: _Job) -> ManifestEntry | SkipRecord:
        cached = _cached_entry(root, job)
        if cached is not None:
            return cached
        lock = locks.get(job.voice)
        try:
            if lock is None:
                wav, sr = backends[job.voice].synthesize(job.spoken, seed)
            else:
                with lock:
                    wav, sr = backends[job.voice].synthesize(job.spoken, seed)
        except MissingDependency:
            raise  # every item would fail the same way: stop the batch
        except Exception as exc:  # TTSError or an engine bug: one bad item must not stop the batch; recorded
            return SkipRecord(job.example.id, job.voice, f"{type(exc).__name__}: {exc}")
        sha = write_flac_atomic(root / job.rel, wav, sr)
        return _entry(job, len(wav) / sr, sr, sha)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(work, j) for j in plan]
        try:
            for i, fut in enumerate(as_completed(futures), start=1):
                result = fut.result()
                (done if isinstance(result, ManifestEntry) else skips).append(result)  # type: ignore[arg-type]
                if progress is not None:
                    progress(i, len(plan))
                if i % CHECKPOINT_EVERY == 0:
                    snapshot().write()
        except BaseException:
            for f in futures:
                f.cancel()
            snapshot().write()  # keep what finished; the files themselves are already final
            raise
    manifest = snapshot()
    manifest.write()
    return manifest


def synthesize_task(
    task: str,
    n: int | None,
    voices: Sequence[str],
    out: str | os.PathLike[str],
    seed: int = 0,
    *,
    jobs: int = 1,
    split: str | None = None,
    data_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Synthesise ``n`` examples of a task in each voice (the same subsample ``load_examples`` gives every run).

    Args:
        task: Task name or alias (``"sst2"``).
        n: Number of examples (None: all), chosen by ``casceq.tasks.load_examples(task, n=n, seed=seed)``.
        voices: Voice names.
        out: Output folder.
        seed: Subsampling seed, also the seed of stochastic voices.
        jobs: Parallel synthesis threads.
        split: Source split (the task's default if None).
        data_dir: Folder of the task's official files (default: the shared datasets folder).
        progress: Called as ``progress(done, total)``.

    Returns:
        The manifest as written to ``out``.
    """
    examples = load_examples(task, n=n, seed=seed, split=split, data_dir=data_dir)
    request = {"task": canonical_name(task), "n": n, "split": split}
    return synthesize_examples(
        examples, voices, out, seed=seed, jobs=jobs, request=request, progress=progress
    )
