"""GGUF files to normal transformers folders, converted once and cached.

Loading a GGUF through transformers dequantises it (10-35 s) and the result refuses ``save_pretrained``, so
``convert_gguf`` rebuilds the model with ``from_config`` + ``load_state_dict`` and saves a float32 folder
(reloads in ~3 s) with its tokenizer and a ``casceq_manifest.json`` carrying the GGUF's sha256. The folder is
written to a temporary directory and renamed into place, so an interrupted conversion never leaves a
half-written folder that a later run would trust; a folder whose manifest names another sha256 is rebuilt.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from casceq.errors import InputError
from casceq.paths import cache_dir

MANIFEST = "casceq_manifest.json"
MANIFEST_FORMAT = 1


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, object] | None:
    """Return the conversion manifest of a folder, or None when it has none (or an unreadable one)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def convert_gguf(gguf: Path, *, sha256: str | None = None, backbone: str | None = None) -> Path:
    """Convert a GGUF file once into a float32 transformers folder in the cache; return the folder.

    The folder name and manifest carry the GGUF's sha256, so a changed file is converted again and a stale
    folder is never reused.

    Args:
        gguf: Path of the ``.gguf`` file.
        sha256: Its sha256 when already known (skips hashing).
        backbone: Backbone id to record (default: the file's stem).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise InputError("GGUF file not found", path=str(gguf))
    digest = sha256 or sha256_file(gguf)
    folder = cache_dir() / "llm" / f"{gguf.stem}-{digest[:12]}"
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("source_sha256") == digest:
        return folder
    kwargs = {"gguf_file": gguf.name}
    src = model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    # The loaded model's config is the GGUF's: parsing the file a third time costs ~10 s for Gemma (262k-token
    # vocabulary in the metadata), a tenth of a cold conversion.
    config = copy.deepcopy(src.config)
    if hasattr(config, "quantization_config"):  # set by the GGUF loader; the saved folder is plain float32
        del config.quantization_config
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain one and copy the dequantised weights.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise InputError(
            f"GGUF weights do not fit the config: missing {missing}, unexpected {unexpected}", path=str(gguf)
        )
    model.tie_weights()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    tmp.chmod(0o755)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {
            "format": MANIFEST_FORMAT,
            "source": str(gguf),
            "source_sha256": digest,
            "backbone": backbone or gguf.stem,
            "model_type": config.model_type,
        }
        (tmp / MANIFEST).write_text(json.dumps(record, indent=1))
        if folder.exists():  # a stale or foreign folder: replace it
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
