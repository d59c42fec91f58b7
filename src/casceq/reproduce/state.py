"""A reproduction that outlives its machine: starts recorded as segments, and a portable archive of its state.

A powered reproduction can take longer than one machine lives (a preemptible cloud node, a session with a time
limit). Its behavioural rows are keyed by content (system spec, calibration offsets, example, audio), so a run
resumed elsewhere redoes nothing it already has, provided the folder travels. Two things make that honest:

- **segments** (``DIR/segments.json``): every start of ``casceq reproduce`` on a folder appends one record
  (command, commit, machine, date, wall seconds, prediction rows before and after, and the digest of the code
  that computes predictions). The findings page lists them, so a page built from rows of several starts says so.
  A start whose inference code differs from the folder's earlier starts is refused unless the user accepts it
  (``--accept-code-change``): rows computed by two versions of the code would otherwise be pooled silently.
- **pack / unpack** (``casceq reproduce --pack FILE`` / ``--unpack FILE``): a ``.tar.gz`` of everything needed
  to resume (plan, run config, calibration, a consistent copy of the store, segment and timing records, the
  mechanistic results) without what is recomputed on demand (synthesised audio, activation captures, the report).
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from casceq.errors import InputError
from casceq.io.store import STORE_FILENAME

SEGMENTS_FILE = "segments.json"

INFERENCE_CODE = ("audio", "io", "run", "systems", "tasks", "data", "types.py")
"""Parts of the ``casceq`` package that decide a prediction row (models, prompts, audio, items, storage); the
statistics, the claims and the reports are not among them: changing those never invalidates stored rows."""

KEYED_WEIGHTS = (
    "data/speech_llm",
    "data/speech_llm_continuous",
    "data/speech_llm_acoustic",
    "data/speech_llm_listener",
)
"""Shipped speech-LLM weights, left out of the digest: their own digest is part of every row's cache key and of
the calibration key (``casceq.run.build``, ``casceq.run.calibrate``), so retrained weights already make their
system's rows and offsets be computed again, and only those."""

LEFT_OUT_DIRS = frozenset({"audio", "captures", "control-capture", "report"})
"""Folder names not packed: synthesised audio and activation captures (and the lens control's view of a capture)
are recomputed on demand (audio keys are content hashes, so a resumed run finds its rows again), and the report is
rewritten by every start."""

LEFT_OUT_SUFFIXES = (".sqlite-wal", ".sqlite-shm", ".sqlite-journal", ".lock", ".tmp")

MAX_MEMBER_BYTES = 2 << 30
"""Largest single file accepted when unpacking (a guard against a hostile archive)."""


def inference_digest(package: Path | None = None) -> str:
    """sha256 over the files of ``INFERENCE_CODE`` (path and content), in path order; 16 hex digits."""
    root = package or Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for part in INFERENCE_CODE:
        base = root / part
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(root).as_posix()
            if (
                "__pycache__" in f.parts
                or f.suffix == ".pyc"
                or rel.startswith(tuple(k + "/" for k in KEYED_WEIGHTS))
            ):
                continue
            h.update(rel.encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            h.update(b"\0")
    return h.hexdigest()[:16]


def read_segments(out: Path) -> list[dict[str, Any]]:
    """The folder's segment records (empty for a folder made before segments existed)."""
    path = Path(out) / SEGMENTS_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable segment record ({exc})", path=str(path)) from None
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise InputError("segment record is not a list of objects", path=str(path))
    return data


def _write_segments(out: Path, segments: list[dict[str, Any]]) -> None:
    path = Path(out) / SEGMENTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(segments, indent=1), encoding="utf-8")
    tmp.replace(path)


def store_rows(out: Path) -> tuple[int, str | None]:
    """Prediction rows in the folder's behavioural store and the time of the newest ((0, None) when none)."""
    path = Path(out) / "run" / STORE_FILENAME
    if not path.is_file():
        return 0, None
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        n, last = con.execute("SELECT COUNT(*), MAX(created_at) FROM predictions").fetchone()
        return int(n), last
    except sqlite3.Error:
        return 0, None
    finally:
        con.close()


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        return max(
            0.0, (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
        )
    except ValueError:
        return None


def start_segment(out: Path, meta: Mapping[str, Any], *, accept_code_change: bool = False) -> int:
    """Append this start to ``DIR/segments.json`` and return its index.

    Raises:
        InputError: The folder's earlier starts computed rows with other inference code, and
            ``accept_code_change`` is False.
    """
    out = Path(out)
    segments = read_segments(out)
    digest = inference_digest()
    rows, last = store_rows(out)
    if segments and not segments[-1].get("closed"):
        # the previous start was killed (the usual end of a session): every row since it began is its own, and
        # its time runs to its newest row
        prev = segments[-1]
        prev["rows_after"] = max(rows, int(prev.get("rows_before", 0)))
        prev["closed"] = "killed"
        if prev["rows_after"] > int(prev.get("rows_before", 0)) and last:
            prev["seconds"] = _seconds_between(prev.get("started"), last)
    earlier = {
        str(s["inference_digest"])
        for s in segments
        if s.get("inference_digest") and s.get("rows_after", 0) > s.get("rows_before", 0)
    }
    accepted = {s.get("inference_digest") for s in segments if s.get("code_change_accepted")}
    changed = sorted(earlier - {digest})
    # a code version already accepted on this folder (and recorded) need not be accepted at every later start
    if changed and digest not in accepted and not accept_code_change:
        raise InputError(
            f"this folder's {rows} prediction rows were computed by other inference code (digest "
            f"{', '.join(changed)}; this casceq: {digest}, see {SEGMENTS_FILE}). Pooling rows of two code versions "
            "could mix two different systems under one name: resume with the casceq that made them, start a new "
            "--out, or pass --accept-code-change (recorded on the findings page)",
            path=str(out),
        )
    segments.append(
        {
            "command": meta.get("command", ""),
            "commit": meta.get("commit", ""),
            "machine": meta.get("machine", ""),
            "platform": meta.get("platform", ""),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "started": _utc_now(),
            "inference_digest": digest,
            "code_change_accepted": bool(changed),
            "rows_before": rows,
            "rows_after": rows,
            "seconds": None,
        }
    )
    _write_segments(out, segments)
    return len(segments) - 1


def end_segment(out: Path, index: int, seconds: float) -> None:
    """Close segment ``index`` at the end of the start: its wall seconds and the store's rows now.

    A start that is killed never gets here; the next start closes it (``start_segment``).
    """
    segments = read_segments(out)
    if not 0 <= index < len(segments):
        return
    segments[index]["seconds"] = round(seconds, 1)
    segments[index]["rows_after"] = store_rows(out)[0]
    segments[index]["closed"] = "finished"
    _write_segments(out, segments)


def segment_lines(segments: list[Mapping[str, Any]]) -> list[str]:
    """Findings-header lines: how many starts wrote rows with which code, then every start (none for one start)."""
    working = [s for s in segments if s.get("rows_after", 0) > s.get("rows_before", 0)]
    if len(segments) <= 1:
        return []
    digests = {s.get("inference_digest") for s in working}
    timed = [float(s["seconds"]) for s in segments if s.get("seconds") is not None]
    machines = sorted({str(s.get("machine", "?")) for s in segments})
    lines = [
        f"- starts: {len(segments)} ({len(working)} wrote prediction rows; inference code "
        + ("identical in all of them" if len(digests) <= 1 else f"DIFFERED: {len(digests)} digests")
        + f"); {sum(timed):.0f} s in all ({sum(timed) / 3600:.1f} h"
        + ("" if len(timed) == len(segments) else f", {len(segments) - len(timed)} start(s) untimed")
        + f") on {len(machines)} machine type(s): {', '.join(machines)}"
    ]
    for i, s in enumerate(segments, 1):
        commit = str(s.get("commit") or "unknown")[:10]
        lines.append(
            f"  - {i}. {s.get('date', '?')} at `{commit}` on {s.get('machine', '?')}: "
            f"{int(s.get('rows_after', 0)) - int(s.get('rows_before', 0))} rows, "
            + (f"{float(s['seconds']):.0f} s" if s.get("seconds") is not None else "time not recorded")
            + (" until stopped" if s.get("closed") == "killed" else "")
            + f" (code {s.get('inference_digest', '?')}"
            + (", change accepted" if s.get("code_change_accepted") else "")
            + ")"
        )
    return lines


def _packed_files(out: Path) -> Iterator[Path]:
    """Files of ``out`` that go into the archive, in path order (stores included).

    Plain files only: ``unpack`` refuses links, so a link is never packed (it would also carry this machine's
    paths).
    """
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if p.is_symlink() or p.is_dir() or any(part in LEFT_OUT_DIRS for part in rel.parts[:-1]):
            continue
        if not p.name.endswith(LEFT_OUT_SUFFIXES):
            yield p


def pack(out: Path, archive: Path) -> dict[str, int]:
    """Write ``archive`` (.tar.gz) with the state of the reproduction in ``out``; returns files and bytes packed.

    Stores are copied through SQLite's backup (``VACUUM INTO``), so a run writing at the same time still gives
    a consistent copy.

    Raises:
        InputError: ``out`` holds no reproduction (no ``plan.json``).
    """
    out, archive = Path(out), Path(archive)
    if not (out / "plan.json").is_file():
        raise InputError("no reproduction here (no plan.json) to pack", path=str(out))
    files = bytes_ = 0
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp_archive = archive.with_name(archive.name + ".tmp")
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tmp_archive, "w:gz") as tar:
        for f in _packed_files(out):
            if f.name == STORE_FILENAME:  # a consistent copy, even while a run writes into it
                copy = Path(tmp) / f"{files}.sqlite"
                con = sqlite3.connect(f)
                try:
                    con.execute("VACUUM INTO ?", (str(copy),))
                finally:
                    con.close()
                f_packed = copy
            else:
                f_packed = f
            tar.add(f_packed, arcname=f.relative_to(out).as_posix())
            files, bytes_ = files + 1, bytes_ + f_packed.stat().st_size
        note = json.dumps({"packed": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "files": files}).encode()
        info = tarfile.TarInfo("PACKED.json")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    tmp_archive.replace(archive)
    return {"files": files, "bytes": bytes_}


def unpack(archive: Path, out: Path) -> int:
    """Extract a ``pack`` archive into ``out`` (new or empty); returns the files written.

    Only regular files with relative paths inside ``out`` are accepted; anything else (links, devices, absolute
    or ``..`` paths, oversized members) refuses the whole archive before a file is written.

    Raises:
        InputError: ``out`` is not empty, the archive is unreadable, not a reproduction's, or unsafe.
    """
    archive, out = Path(archive), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("--unpack needs a new or empty --out folder", path=str(out))
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed below, after its errors are told apart
        members = tar.getmembers()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise InputError(
            f"not a reproduction archive, or a truncated one ({exc})", path=str(archive)
        ) from None
    with tar:
        for m in members:
            name = PurePosixPath(m.name)
            if not (m.isfile() or m.isdir()) or name.is_absolute() or ".." in name.parts:
                raise InputError(f"unsafe member {m.name!r} (only plain relative files)", path=str(archive))
            if m.size > MAX_MEMBER_BYTES:
                raise InputError(
                    f"member {m.name!r} is larger than {MAX_MEMBER_BYTES} bytes", path=str(archive)
                )
        if "plan.json" not in {m.name for m in members}:
            raise InputError("not a reproduction archive (no plan.json)", path=str(archive))
        out.mkdir(parents=True, exist_ok=True)
        written = 0
        for m in members:
            if not m.isfile() or m.name == "PACKED.json":
                continue
            dest = out / m.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            if src is None:
                continue
            try:
                with src, dest.open("wb") as fh:
                    while block := src.read(1 << 20):
                        fh.write(block)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise InputError(
                    f"truncated or corrupt member {m.name!r} ({exc})", path=str(archive)
                ) from None
            written += 1
    return written
