"""What each loaded model of a run resolved to (dtype, device, weights path), kept in ``models.json``.

The config holds what was asked (``dtype = "auto"``, or nothing); a run's numbers depend on what it got
(bfloat16 on a GPU, float32 on CPU). This file records the latter beside ``config.json`` without entering the
config hash: a resumed run that loads nothing keeps the entries of the start that loaded the models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from casceq.run.config import SECRET_SETTING
from casceq.systems.loading import load_reports

MODELS_JSON = "models.json"


def backend_record(backend: Any, role: str = "") -> dict[str, Any]:
    """What one loaded back end resolved to: its weights' load reports, an API's settings, an ASR's description."""
    out: dict[str, Any] = {"class": type(backend).__name__}
    reports = load_reports(backend)
    if reports:  # weights loaded through checked_load: path, dtype, device (and no missing weights)
        out["weights"] = [
            {"path": r.path, "dtype": r.dtype, "device": r.device, "unused_tensors": len(r.unexpected)}
            for r in reports
        ]
    for attr in ("dtype", "device"):  # the back end's own setting, e.g. HFCausalLM's "bfloat16-autocast"
        value = getattr(backend, attr, None)
        if isinstance(value, str):
            out[attr] = value
    settings = getattr(backend, "settings", None)
    if isinstance(settings, Mapping):  # an API model's request settings (Gemini's thinking budget)
        out["settings"] = _public(settings)
    describe = getattr(backend, "describe", None)
    if role == "asr" and callable(describe):  # ASR back ends describe their decoding settings as a dict
        desc = describe()
        if isinstance(desc, Mapping):
            out["settings"] = _public(desc)
    return out


def _public(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings without any that could hold a secret (the names ``config.SECRET_SETTING`` refuses in a config)."""
    return {k: v for k, v in settings.items() if not SECRET_SETTING.search(str(k))}


def loaded_models(systems: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Records of the back ends the run's systems loaded in this process: system -> role -> record."""
    out: dict[str, dict[str, Any]] = {}
    for name, system in systems.items():
        roles = {
            role: backend_record(lazy.loaded, role)
            for role, lazy in getattr(system, "_lazy", {}).items()
            if getattr(lazy, "loaded", None) is not None
        }
        if roles:
            out[name] = roles
    return out


def write_models(out: Path, loaded: Mapping[str, dict[str, Any]]) -> None:
    """Merge this start's records into ``models.json`` (a system loaded now replaces its earlier entry)."""
    if not loaded:
        return
    path = out / MODELS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        data = {}  # a damaged record is rebuilt from what is loaded now
    systems = data.get("systems", {}) if isinstance(data, dict) else {}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    systems.update({name: {"loaded_at": stamp, **roles} for name, roles in loaded.items()})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"systems": systems}, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def read_models(out: Path) -> dict[str, Any]:
    """The run folder's ``models.json`` systems (empty when no model was loaded yet)."""
    path = out / MODELS_JSON
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return dict(data.get("systems", {})) if isinstance(data, dict) else {}
