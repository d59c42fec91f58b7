"""Typed experiment configuration: a TOML file maps onto these dataclasses and is validated with clear errors.

Example (``examples/experiment.toml``)::

    name = "demo"
    seed = 0
    batch_size = 8
    answer_mode = "score"            # "score" (label log-likelihood) or "generate" (free text, parsed)
    voices = ["piper-joe", "hibari-heart"]
    conditions = ["clean", "babble@0"]

    [tasks.sst2]
    n = 100

    [[systems]]
    name = "Cascade-S"
    kind = "cascade"                  # cascade | speech_llm | text
    asr = "faster-whisper:base"
    llm = "gemma-3-270m"
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casceq.errors import InputError

KINDS = ("cascade", "speech_llm", "text")
MODES = ("score", "generate")
CALIBRATION = ("none", "heldout", "content-free")
DEFAULT_BATCH_SIZE = 8
SECRET_SETTING = re.compile(r"(?i)(^|_)(api_?key|apikey|token|secret|password|passwd|credentials?|auth)$")
"""Setting names that would hold a secret inline (refused: a key is named by its variable, ``api_key_env``)."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TaskSpec:
    """One task of an experiment: how many items, and from where."""

    name: str
    n: int | None = None
    split: str | None = None
    data_dir: str | None = None


@dataclass(frozen=True)
class SystemSpec:
    """One system: its kind, back-end specs and LLM settings.

    ``backbone`` defaults to the LLM back end's backbone name (cascades, text) and must be given for speech
    LLMs whose adapter cannot tell.
    """

    name: str
    kind: str
    asr: str | None = None
    llm: str | None = None
    model: str | None = None
    backbone: str | None = None
    answer_mode: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def cascade(
        cls,
        name: str,
        asr: str,
        llm: str,
        *,
        backbone: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> SystemSpec:
        """An ASR -> LLM cascade (``settings``: the LLM's, e.g. ``{"few_shot": {"sst2": 4}}``)."""
        return cls(name, "cascade", asr=asr, llm=llm, backbone=backbone, settings=_plain(settings or {}))

    @classmethod
    def text(cls, name: str, llm: str, *, settings: Mapping[str, Any] | None = None) -> SystemSpec:
        """The text ceiling: the LLM answers from the gold text."""
        return cls(name, "text", llm=llm, settings=_plain(settings or {}))

    @classmethod
    def speech_llm(cls, name: str, model: str, *, backbone: str | None = None) -> SystemSpec:
        """An end-to-end speech LLM (a ``make_speech_llm`` spec), with its backbone when the adapter cannot tell."""
        return cls(name, "speech_llm", model=model, backbone=backbone)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: systems × tasks × voices × conditions."""

    name: str
    systems: tuple[SystemSpec, ...]
    tasks: tuple[TaskSpec, ...]
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    answer_mode: str = "score"
    voices: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ("clean",)
    calibration: str = "heldout"
    calibration_n: int = 64
    bootstrap: int = 1000
    tasks_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for hashing and for writing back to TOML/JSON).

        ``tasks_file`` is left out when unset, so configs without user tasks hash as they always did.
        """
        out = asdict(self)
        if out["tasks_file"] is None:
            del out["tasks_file"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> ExperimentConfig:
        """Inverse of ``to_dict`` (a run folder's ``config.json``), validated like a TOML config."""
        try:
            systems = [{k: v for k, v in s.items() if v is not None} for s in data["systems"]]
            tasks = {
                t["name"]: {k: v for k, v in t.items() if k != "name" and v is not None}
                for t in data["tasks"]
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise _err(path, f"not a saved experiment config ({exc!r})") from exc
        return parse_config({**data, "systems": systems, "tasks": tasks}, path)

    def hash(self) -> str:
        """SHA-256 of the canonical JSON form: a run folder refuses a different config under the same name."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def build(
        cls,
        name: str,
        systems: Sequence[SystemSpec],
        tasks: Mapping[str, int | None] | Sequence[TaskSpec],
        **options: Any,
    ) -> ExperimentConfig:
        """A config built in code and validated as a TOML config is (the same checks, the same canonical form).

        Args:
            name: Run name.
            systems: The systems (``SystemSpec.cascade``, ``.text``, ``.speech_llm``).
            tasks: Items per task, in table order (None: the whole split), or ``TaskSpec``s (split, data folder).
            **options: Any other field (``seed``, ``voices``, ``conditions``, ``calibration_n``, ...).

        Raises:
            InputError: Whatever ``parse_config`` refuses (unknown task, voice or condition, missing key).
        """
        specs = (
            tuple(TaskSpec(t, n) for t, n in tasks.items()) if isinstance(tasks, Mapping) else tuple(tasks)
        )
        raw = cls(name, tuple(systems), specs, **options)
        return cls.from_dict(raw.to_dict())

    def to_toml(self, comment: str = "") -> str:
        """The config as a ``casceq run`` TOML file (``load_config`` reads it back to an equal config).

        Args:
            comment: First lines of the file, each written as a ``#`` comment.
        """
        d = self.to_dict()
        lines = [f"# {line}".rstrip() for line in comment.splitlines()]
        lines += [f"{k} = {_toml_value(d[k])}" for k in _TOP_LEVEL if k in d]
        lines.append("")
        for t in d["tasks"]:
            lines.append(f"[tasks.{t['name']}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in t.items() if k != "name" and v is not None]
            lines.append("")
        for spec in d["systems"]:
            lines.append("[[systems]]")
            lines += [
                f"{k} = {_toml_value(v)}"
                for k, v in spec.items()
                if v is not None and not (k == "settings" and not v)
            ]
            lines.append("")
        return "\n".join(lines)


_TOP_LEVEL = (
    "name",
    "seed",
    "batch_size",
    "answer_mode",
    "calibration",
    "calibration_n",
    "bootstrap",
    "voices",
    "conditions",
    "tasks_file",
)
"""Top-level keys in the order ``to_toml`` writes them."""


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as plain nested dicts (what a TOML file parses to)."""
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in settings.items()}


def _toml_value(v: Any) -> str:
    """One TOML value: a string, a boolean, a number, an array or an inline table of those."""
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__} {v!r}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _err(path: str | None, msg: str) -> InputError:
    return InputError(msg, path=path)


def _take(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, path: str | None) -> Any:
    if key not in d:
        return None
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise _err(path, f"{where}: '{key}' must be {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def check_no_inline_secrets(spec: SystemSpec, where: str, path: str | None) -> None:
    """Refuse a secret written into the config (it would go into ``config.json`` and the store).

    Keys are accepted only by reference: ``api_key_env = "NAME"`` names the environment variable holding it.
    Error messages never repeat the value.
    """
    for name, value in spec.settings.items():
        if SECRET_SETTING.search(name) and not isinstance(value, bool):
            raise _err(
                path,
                f"{where} ({spec.name}): settings.{name} would put a secret into the run folder; store the key in "
                f'an environment variable and name it instead, e.g. api_key_env = "MY_KEY_VARIABLE"',
            )
        if name.endswith("_env") and not (isinstance(value, str) and ENV_NAME.fullmatch(value)):
            raise _err(
                path,
                f"{where} ({spec.name}): settings.{name} must be the NAME of an environment variable "
                "(letters, digits, _), not the key itself",
            )
        if name == "allow_http" and not isinstance(value, bool):
            raise _err(path, f"{where} ({spec.name}): settings.allow_http must be true or false")
    for field_name in ("llm", "model", "asr"):
        value = getattr(spec, field_name)
        url = value.partition("@")[2] if value else ""
        if url and urllib.parse.urlsplit(url).password is not None:
            raise _err(
                path,
                f"{where} ({spec.name}): the {field_name} URL holds a password; name the key's environment "
                "variable with api_key_env instead",
            )


def parse_config(data: dict[str, Any], path: str | None = None) -> ExperimentConfig:
    """Validate a TOML-shaped dict and build the config (errors name the file and the offending key)."""
    known = {f for f in ExperimentConfig.__dataclass_fields__} | {"calibration"}
    extra = set(data) - known
    if extra:
        raise _err(path, f"unknown top-level keys {sorted(extra)}; known: {sorted(known)}")
    systems_raw = data.get("systems")
    if not isinstance(systems_raw, list) or not systems_raw:
        raise _err(path, "needs at least one [[systems]] table")
    systems = []
    for i, s in enumerate(systems_raw):
        where = f"systems[{i}]"
        if not isinstance(s, dict):
            raise _err(path, f"{where} must be a table")
        unknown = set(s) - set(SystemSpec.__dataclass_fields__)
        if unknown:
            raise _err(path, f"{where}: unknown keys {sorted(unknown)}")
        name = _take(s, "name", str, where, path)
        kind = _take(s, "kind", str, where, path)
        if not name or kind not in KINDS:
            raise _err(path, f"{where}: needs a 'name' and a 'kind' in {KINDS}")
        spec = SystemSpec(
            name=name,
            kind=kind,
            asr=_take(s, "asr", str, where, path),
            llm=_take(s, "llm", str, where, path),
            model=_take(s, "model", str, where, path),
            backbone=_take(s, "backbone", str, where, path),
            answer_mode=_take(s, "answer_mode", str, where, path),
            settings=_take(s, "settings", dict, where, path) or {},
        )
        check_no_inline_secrets(spec, where, path)
        need = {"cascade": ("asr", "llm"), "text": ("llm",), "speech_llm": ("model",)}[kind]
        for key in need:
            if getattr(spec, key) is None:
                raise _err(path, f"{where} ({name}): a {kind} system needs '{key}'")
        if spec.answer_mode is not None and spec.answer_mode not in MODES:
            raise _err(path, f"{where}: answer_mode must be one of {MODES}")
        systems.append(spec)
    names = [s.name for s in systems]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise _err(path, f"duplicate system names {sorted(dup)}")
    tasks_raw = data.get("tasks")
    if isinstance(tasks_raw, list):
        tasks_raw = {t: {} for t in tasks_raw}
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise _err(path, "needs [tasks] (a table of task names, e.g. [tasks.sst2] n = 100)")
    from casceq.tasks import get_task

    tasks_file = _tasks_file(data, path)
    tasks = []
    for tname, t in tasks_raw.items():
        if not isinstance(t, dict):
            raise _err(path, f"tasks.{tname} must be a table")
        try:
            canonical = get_task(tname).name
        except Exception as exc:
            raise _err(path, f"tasks.{tname}: {exc}") from None
        unknown = set(t) - set(TaskSpec.__dataclass_fields__)
        if unknown:
            raise _err(path, f"tasks.{tname}: unknown keys {sorted(unknown)}")
        n = _take(t, "n", int, f"tasks.{tname}", path)
        if n is not None and n <= 0:
            raise _err(path, f"tasks.{tname}: n must be positive")
        tasks.append(
            TaskSpec(
                canonical, n, _take(t, "split", str, tname, path), _take(t, "data_dir", str, tname, path)
            )
        )
    mode = data.get("answer_mode", "score")
    if mode not in MODES:
        raise _err(path, f"answer_mode must be one of {MODES}")
    calib = data.get("calibration", "heldout")
    if calib not in CALIBRATION:
        raise _err(path, f"calibration must be one of {CALIBRATION}")
    from casceq.audio.conditions import parse_condition

    conditions = tuple(data.get("conditions", ("clean",)))
    for c in conditions:
        try:
            parse_condition(c)
        except Exception as exc:
            raise _err(path, f"conditions: {exc}") from None
    batch = _take(data, "batch_size", int, "top level", path)
    batch = DEFAULT_BATCH_SIZE if batch is None else batch
    if batch < 1:
        raise _err(path, f"batch_size must be >= 1, got {batch}")
    voices = data.get("voices", ())
    if not isinstance(voices, list | tuple) or not all(isinstance(v, str) for v in voices):
        raise _err(path, f"voices must be a list of voice names, got {voices!r}")
    from casceq.audio.tts.registry import voice_info

    for v in voices:  # checked even in a text-only run: a typo should not wait for the first audio run
        try:
            voice_info(v)
        except InputError as exc:
            raise _err(path, f"voices: {exc}") from None
    return ExperimentConfig(
        name=str(data.get("name", "experiment")),
        systems=tuple(systems),
        tasks=tuple(tasks),
        seed=int(data.get("seed", 0)),
        batch_size=batch,
        answer_mode=mode,
        voices=tuple(voices),
        conditions=conditions,
        calibration=calib,
        calibration_n=int(data.get("calibration_n", 64)),
        bootstrap=int(data.get("bootstrap", 1000)),
        tasks_file=tasks_file,
    )


def _tasks_file(data: dict[str, Any], path: str | None) -> str | None:
    """Register the config's ``tasks_file`` (relative to the config file) and return its absolute path."""
    raw = _take(data, "tasks_file", str, "top level", path)
    if raw is None:
        return None
    base = Path(path).parent if path is not None else Path.cwd()
    resolved = (base / raw).resolve()
    from casceq.tasks import register_tasks_file

    try:
        register_tasks_file(resolved)
    except InputError as exc:
        raise _err(path, f"tasks_file: {exc}") from None
    return str(resolved)


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The config a run folder was run with (its ``config.json``).

    Raises:
        InputError: Not a run folder, or an unreadable config (the file named).
    """
    meta = Path(run_dir) / "config.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))["config"]
    except FileNotFoundError:
        raise InputError("not a run folder (no config.json)", path=str(run_dir)) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable run config ({exc!r})", path=str(meta)) from exc
    return ExperimentConfig.from_dict(data, str(meta))


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment config."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("config file not found", path=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", path=str(p)) from None
    return parse_config(data, str(p))
