"""On-disk format of captured hidden states: a folder of self-contained shards, written atomically.

::

    capture.json                 CaptureMeta: model, fingerprint, layers, width, frame rate, dtype, features
    shard-00000.states.npy       float16 [K, P, D]: K captured layers x P positions (all utterances of the shard)
    shard-00000.frames.npy       float32 [P, 5]: start_s, end_s, energy_db, f0_hz (NaN unvoiced), voiced_fraction
    shard-00000.jsonl            one UtteranceRecord per line: id, transcript, offset/count of its positions, ...

Each file is written to ``<name>.tmp``, flushed, fsynced and renamed; the ``.jsonl`` is renamed last, so a
shard exists (for readers and for ``--resume``) only once all three files are complete. ``capture.json`` is
written when a capture finishes; while it runs (and after it failed) the same metadata is in
``capture.partial.json``, which only a resuming writer reads: a failed attempt is not taken for a capture. A crash or a full disk
leaves at most ``.tmp`` files, which the writer removes. Rows of one utterance are contiguous within one shard,
so reading a layer is one memory-mapped slice per shard and memory stays flat whatever the number of utterances.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError

FORMAT = "casceq-capture"
VERSION = 1
META_FILE = "capture.json"
PARTIAL_META_FILE = "capture.partial.json"
FRAME_COLUMNS = ("start_s", "end_s", "energy_db", "f0_hz", "voiced_fraction")


@dataclass(frozen=True)
class CaptureMeta:
    """What a capture folder holds and how it was made.

    Attributes:
        model: The model spec the states come from (``"whisper:base"``, ``"qwen2-audio:/path"``).
        key: Architecture key of the adapter used (``casceq.mech.adapters.RULES``).
        fingerprint: SHA-256 over the model's weights (``weights_fingerprint``); lens/erasure refuse others.
        layers: Captured layer indices (0 = embeddings, n_layers = last layer output, raw, no final norm).
        n_layers: The model's number of layers.
        width: Hidden size D.
        seconds_per_position: Seconds of audio per position.
        window_s: Clips longer than this were truncated to it (see each record's ``truncated``).
        dtype: Storage dtype of states (``"float16"`` or ``"float32"``).
        tracker: Pitch tracker of the stored features (empty when features were not computed).
        voicing_rule: Voicing rule of the stored features.
        prompt: Instruction given to speech LLMs (empty for encoders).
        extra: Free-form provenance (casceq version, command line, machine).
    """

    model: str
    key: str
    fingerprint: str
    layers: tuple[int, ...]
    n_layers: int
    width: int
    seconds_per_position: float
    window_s: float | None
    dtype: str = "float16"
    tracker: str = ""
    voicing_rule: str = ""
    prompt: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def layer_slot(self, layer: int) -> int:
        """Index along a shard's first axis of captured ``layer``; ``InputError`` if it was not captured."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} was not captured (captured: {list(self.layers)})")
        return self.layers.index(layer)


@dataclass(frozen=True)
class UtteranceRecord:
    """One utterance's place in a capture.

    Attributes:
        id: Utterance id (example id, plus voice for synthesised speech).
        transcript: Reference text (what was spoken).
        audio: Path of the audio file.
        duration: Seconds of audio analysed (after truncation).
        truncated: Whether the clip was longer than the model's window and cut to it.
        shard: Shard number.
        offset: First row of this utterance in the shard.
        count: Number of positions (rows).
        meta: Extra fields (voice, speaker, actor) usable as split groups.
    """

    id: str
    transcript: str
    audio: str
    duration: float
    truncated: bool
    shard: int
    offset: int
    count: int
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardBlock:
    """One shard's rows of one layer.

    Attributes:
        records: The shard's utterances, in row order.
        states: float32 [P, D] states of the layer.
        frames: float32 [P, 5] position times and features (columns ``FRAME_COLUMNS``).
    """

    records: tuple[UtteranceRecord, ...]
    states: np.ndarray
    frames: np.ndarray

    def rows(self, record: UtteranceRecord) -> slice:
        """Return the rows of ``record`` in this block."""
        return slice(record.offset, record.offset + record.count)


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _atomic(path: Path, write: Any) -> None:
    """Write via ``write(file)`` into ``path.tmp``, fsync, rename; remove the temp file on any failure."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_meta(folder: Path, meta: CaptureMeta, name: str = META_FILE) -> None:
    """Write ``capture.json`` (or the in-progress ``capture.partial.json``) atomically."""
    text = json.dumps({"format": FORMAT, "version": VERSION, **dataclasses.asdict(meta)}, indent=2) + "\n"
    _atomic(folder / name, lambda f: f.write(text.encode()))


def read_meta(folder: str | Path, *, partial_ok: bool = False) -> CaptureMeta:
    """Read and validate ``capture.json`` of a capture folder (or, with ``partial_ok``, of an unfinished one)."""
    path = Path(folder) / META_FILE
    if not path.is_file() and partial_ok and (Path(folder) / PARTIAL_META_FILE).is_file():
        path = Path(folder) / PARTIAL_META_FILE
    if not path.is_file():
        if (Path(folder) / PARTIAL_META_FILE).is_file():
            raise InputError(
                "an unfinished capture (a failed or interrupted attempt): run the same casceq capture again to "
                "continue it",
                path=str(folder),
            )
        raise InputError("not a capture folder (no capture.json)", path=str(folder))
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from exc
    if raw.pop("format", None) != FORMAT or raw.pop("version", None) != VERSION:
        raise InputError(f"not a {FORMAT} v{VERSION} file", path=str(path))
    names = {f.name for f in dataclasses.fields(CaptureMeta)}
    try:
        raw["layers"] = tuple(raw["layers"])
        return CaptureMeta(**{k: v for k, v in raw.items() if k in names})
    except (KeyError, TypeError) as exc:
        raise InputError(f"malformed capture metadata: {exc}", path=str(path)) from exc


class ShardWriter:
    """Buffers utterances and writes a shard every ``shard_positions`` rows (memory flat in N).

    Call :meth:`add` per utterance and :meth:`close` at the end (or use it as a context manager).
    """

    def __init__(
        self, folder: str | Path, meta: CaptureMeta, *, shard_positions: int = 50_000, first_shard: int = 0
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.tmp"):
            stale.unlink()
        self.meta = meta
        self.shard_positions = shard_positions
        self.next_shard = first_shard
        self._states: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self._records: list[UtteranceRecord] = []
        self._rows = 0
        write_meta(self.folder, meta, PARTIAL_META_FILE)  # capture.json only when close() finishes

    def add(self, record: UtteranceRecord, states: np.ndarray, frames: np.ndarray) -> None:
        """Buffer one utterance: ``states`` [K, P, D] in the capture dtype, ``frames`` [P, 5] float32."""
        k, p, d = states.shape
        if k != len(self.meta.layers) or d != self.meta.width or frames.shape != (p, len(FRAME_COLUMNS)):
            raise InputError(
                f"{record.id}: states {states.shape} / frames {frames.shape} do not fit the capture"
            )
        self._records.append(dataclasses.replace(record, shard=self.next_shard, offset=self._rows, count=p))
        self._states.append(states)
        self._frames.append(frames.astype(np.float32))
        self._rows += p
        if self._rows >= self.shard_positions:
            self.flush()

    def flush(self) -> None:
        """Write the buffered utterances as one shard (nothing if the buffer is empty)."""
        if not self._records:
            return
        base = self.folder / _shard_name(self.next_shard)
        states = np.concatenate(self._states, axis=1)
        frames = np.concatenate(self._frames, axis=0)
        lines = "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n" for r in self._records)
        try:
            _atomic(base.with_name(base.name + ".states.npy"), lambda f: np.save(f, states))
            _atomic(base.with_name(base.name + ".frames.npy"), lambda f: np.save(f, frames))
            _atomic(base.with_name(base.name + ".jsonl"), lambda f: f.write(lines.encode()))
        except OSError as exc:
            for suffix in (".states.npy", ".frames.npy"):
                base.with_name(base.name + suffix).unlink(missing_ok=True)  # no half shard left behind
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InputError(
                    f"disk full while writing {base.name} ({states.nbytes / 1e6:.0f} MB); the "
                    f"{self.next_shard} complete shards are intact: free space and rerun with --resume",
                    path=str(self.folder),
                ) from exc
            raise
        self.next_shard += 1
        self._states, self._frames, self._records, self._rows = [], [], [], 0

    def close(self) -> None:
        """Flush the last shard and mark the capture finished (``capture.json``)."""
        self.flush()
        write_meta(self.folder, self.meta)
        (self.folder / PARTIAL_META_FILE).unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


class CaptureReader:
    """Reads a capture folder: metadata, utterance records and per-layer shard blocks (memory-mapped)."""

    def __init__(self, folder: str | Path, *, partial_ok: bool = False) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder, partial_ok=partial_ok)
        self.shards: list[tuple[int, tuple[UtteranceRecord, ...]]] = []
        for path in sorted(self.folder.glob("shard-*.jsonl")):
            number = int(path.name.split("-")[1].split(".")[0])
            recs = []
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    recs.append(UtteranceRecord(**json.loads(line)))
                except (json.JSONDecodeError, TypeError) as exc:
                    raise InputError(f"bad utterance record: {exc}", path=str(path), line=line_no) from exc
            self.shards.append((number, tuple(recs)))

    @property
    def utterances(self) -> tuple[UtteranceRecord, ...]:
        """All utterance records, in capture order."""
        return tuple(r for _, recs in self.shards for r in recs)

    def iter_layer(self, layer: int) -> Iterator[ShardBlock]:
        """Yield each shard's block of ``layer`` (states as float32 [P, D]), one shard in memory at a time."""
        slot = self.meta.layer_slot(layer)
        for number, recs in self.shards:
            base = self.folder / _shard_name(number)
            states = np.load(base.with_name(base.name + ".states.npy"), mmap_mode="r")
            frames = np.load(base.with_name(base.name + ".frames.npy"))
            yield ShardBlock(recs, np.array(states[slot], dtype=np.float32), frames)  # writable copy
