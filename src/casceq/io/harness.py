"""Read per-example logs of other evaluation harnesses as predictions (``casceq import --from``).

Supported, as the tools write them (docs/import.md):

- ``lm-eval``: lm-evaluation-harness ``--log_samples`` files ``samples_<task>_<date>.jsonl`` (one object per
  document and filter: ``doc_id``, ``doc``, ``target``, ``arguments``, ``resps``, ``filtered_resps``, ``filter``,
  metric fields, hashes), next to ``results_<date>.json`` (``config.model``, ``config.model_args``,
  ``model_name``).
- ``lmms-eval``: its ``<date>_samples_<task>.jsonl`` (``doc`` and ``arguments`` dropped, ``input`` added,
  one-element ``resps``/``filtered_resps`` lists flattened, ``resps`` dropped when equal) and
  ``<date>_results.json``.
- ``inspect``: inspect_ai eval logs, ``.json`` (one object with ``eval`` and ``samples``) or ``.eval`` (a zip of
  ``header.json`` and ``samples/<id>_epoch_<n>.json``): sample ``id``, ``epoch``, ``target``,
  ``output.choices[0].message.content``, ``metadata``; ``eval.model``, ``eval.model_generate_config``.

Generated answers go through the task's parser (the raw generation, not the harness's filtered extraction).
Log-likelihood (multiple-choice) documents become the argmax label with every label's log-likelihood kept as
``label_scores``; choices are matched to labels by their continuation text when it names the labels, else by
position. Golds come from the logs' targets (a label, a label's index, or for open answers the answer list).
Everything is validated before anything is returned; problems name the file and line.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.jsonlines import read_jsonl
from casceq.tasks.base import Task
from casceq.tasks.parsing import alias_match, surface_key
from casceq.types import CLEAN, INVALID, Example, Prediction

HARNESSES = ("lm-eval", "lmms-eval", "inspect")
"""The ``--from`` values."""

_BOOL_STRINGS = frozenset({"True", "False", "true", "false"})


@dataclass(frozen=True)
class HarnessImport:
    """Predictions read from harness logs, with what the logs say about the model.

    Attributes:
        predictions: One per document, in file order.
        model: The model name from the results file or log header (None when absent).
        settings: Model arguments and generation settings from the logs.
        skipped: Lines left out on purpose (other filters or epochs, samples that ended in an error), with
            the reason.
        warnings: What the user should know about the logs as a whole (an inspect log that did not finish).
    """

    predictions: tuple[Prediction, ...]
    model: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Options:
    task: Task
    system: str
    condition: str
    backbone: str | None
    id_field: str | None
    filter: str | None
    epoch: int


def _unwrap(value: Any) -> Any:
    """Strip one-element list nesting (``[["text"]]`` -> ``"text"``)."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _loglik_pair(value: Any) -> float | None:
    """The log-likelihood of a ``[ll, is_greedy]`` response (strings, as lm-eval's ``sanitize_list`` writes)."""
    value = _unwrap(value)
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    ll, greedy = value
    if not (isinstance(greedy, bool) or str(greedy) in _BOOL_STRINGS):
        return None
    try:
        x = float(ll)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _logliks(sample: Mapping[str, Any]) -> list[float] | None:
    """Per-choice log-likelihoods of a multiple-choice document, or None for a generated answer."""
    for key in ("filtered_resps", "resps"):
        resps = sample.get(key)
        if isinstance(resps, list) and len(resps) > 1:
            values = [_loglik_pair(r) for r in resps]
            if all(v is not None for v in values):
                return [float(v) for v in values if v is not None]
    return None


def _generation(sample: Mapping[str, Any]) -> str:
    """The raw generated text (``resps``; lmms-eval may keep only ``filtered_resps``)."""
    for key in ("resps", "filtered_resps"):
        if key in sample:
            value = _unwrap(sample[key])
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return value[0]  # several samples per document (repeats): the first
    raise ValueError("no generated text in 'resps' or 'filtered_resps'")


def _continuations(sample: Mapping[str, Any]) -> list[str] | None:
    """The choice continuations of a log-likelihood document (``arguments.gen_args_i.arg_1``), if logged."""
    args = sample.get("arguments")
    if not isinstance(args, Mapping):
        return None
    out = []
    for i in range(len(args)):
        item = args.get(f"gen_args_{i}")
        if not isinstance(item, Mapping) or not isinstance(item.get("arg_1"), str):
            return None
        out.append(item["arg_1"])
    return out


def _choice_labels(task: Task, n: int, sample: Mapping[str, Any]) -> tuple[str, ...]:
    """Labels of the choices, in the log's order: by continuation text when it names the labels, else position."""
    by_key = {surface_key(lab): lab for lab in task.labels}
    conts = _continuations(sample)
    if conts is not None and len(conts) == n:
        named = [by_key.get(surface_key(c)) for c in conts]
        if all(named) and len(set(named)) == n:
            return tuple(lab for lab in named if lab is not None)
    if n != len(task.labels):
        raise ValueError(
            f"{n} scored choices but task {task.name!r} has {len(task.labels)} labels {list(task.labels)}"
        )
    # By position; but a continuation that names a label must sit at that label's position, or the
    # positional mapping would silently score one label's likelihood as another's.
    for i, cont in enumerate(conts or []):
        named_as = by_key.get(surface_key(cont))
        if named_as is not None and named_as != task.labels[i]:
            raise ValueError(
                f"choice {i} is {cont!r} (label {named_as!r}) but task {task.name!r} has {task.labels[i]!r} "
                f"at that position: the log's choices {conts} do not match the labels {list(task.labels)}"
            )
    return task.labels


def gold_of(task: Task, target: Any, order: Sequence[str] | None = None) -> tuple[str, ...]:
    """Map a harness target onto the task's gold: a label, a label index, or (open answers) the alias list.

    ``order`` is the labels in the log's choice order (a log-likelihood document): an index target points into
    the document's choices, which need not be in the task's label order.
    """
    if isinstance(target, str) and target.strip().startswith("["):
        with contextlib.suppress(ValueError, SyntaxError):
            target = ast.literal_eval(target.strip())  # lm-eval writes str(list) for list targets
    if task.open_answer:
        items = target if isinstance(target, list) else [target]
        aliases = tuple(str(a).strip() for a in items if str(a).strip())
        if not aliases:
            raise ValueError(f"empty target {target!r}")
        return aliases
    if isinstance(target, list):
        if len(target) != 1:
            raise ValueError(f"target {target!r}: a classification document needs one gold label")
        target = target[0]
    text = str(target).strip()
    if text in task.labels:
        return (text,)
    by_key = {surface_key(lab): lab for lab in task.labels}
    if surface_key(text) in by_key:
        return (by_key[surface_key(text)],)
    labels = tuple(order) if order is not None else task.labels
    if text.isdigit() and int(text) < len(labels):
        return (labels[int(text)],)
    raise ValueError(
        f"target {target!r} is not a label of task {task.name!r} {list(task.labels)} or an index"
    )


def _prediction(opts: _Options, example_id: str, target: Any, sample: Mapping[str, Any]) -> Prediction:
    task = opts.task
    scores = None if task.open_answer else _logliks(sample)
    gold = gold_of(task, target) if scores is None else ()
    if scores is not None:
        labels = _choice_labels(task, len(scores), sample)
        gold = gold_of(task, target, order=labels)
        label_scores = dict(zip(labels, scores, strict=True))
        best = max(range(len(scores)), key=lambda i: scores[i])  # ties: the first choice, as lm-eval's argmax
        output = label = labels[best]
    else:
        output = _generation(sample)
        label = task.parse(output)
        label_scores = None
    correct = label != INVALID and alias_match(label, gold) if task.open_answer else label == gold[0]
    return Prediction(
        system=opts.system,
        task=task.name,
        condition=opts.condition,
        example_id=example_id,
        output=output,
        label=label,
        gold=gold[0],
        label_scores=label_scores,
        backbone=opts.backbone,
        correct=correct,
    )


def _file_of(where: str) -> str:
    """The file part of a document location (``file:line``, ``file sample N``, ``file!member``)."""
    for sep in ("!", " sample "):
        if sep in where:
            return where.split(sep, 1)[0]
    return where.rsplit(":", 1)[0]


class _Reader:
    """Collects predictions and errors over files; raises one InputError listing the problems."""

    def __init__(self, opts: _Options) -> None:
        self.opts = opts
        self.predictions: list[Prediction] = []
        self.errors: list[str] = []
        self.skipped: list[str] = []
        self.warnings: list[str] = []
        self.seen: dict[str, str] = {}

    def add(self, where: str, example_id: Any, target: Any, sample: Mapping[str, Any]) -> None:
        try:
            if example_id is None or (isinstance(example_id, str) and not example_id.strip()):
                raise ValueError("no example id")
            eid = str(example_id)
            if eid in self.seen:
                raise ValueError(self._repeat(eid, where))
            self.predictions.append(_prediction(self.opts, eid, target, sample))
            self.seen[eid] = where
        except ValueError as exc:
            self.errors.append(f"{where}: {exc}")

    def _repeat(self, eid: str, where: str) -> str:
        first = self.seen[eid]
        if _file_of(first) != _file_of(where):  # two logs of the same documents, e.g. a re-run in one folder
            return (f"example id {eid!r} repeats (first at {first}): the logs hold the same documents twice "
                    "(a re-run in the same folder?): import one of the files")  # fmt: skip
        return f"example id {eid!r} repeats (first at {first}); use --id-field"

    def result(self, model: str | None, settings: Mapping[str, Any]) -> HarnessImport:
        if self.errors:
            more = "".join(f"\n  {e}" for e in self.errors[1:20])
            raise InputError(
                self.errors[0] + (f"\n{len(self.errors) - 1} more error(s):{more}" if more else "")
            )
        if not self.predictions:
            raise InputError(
                "no documents found in the logs" + (f" ({self.skipped[0]})" if self.skipped else "")
            )
        return HarnessImport(
            tuple(self.predictions), model, dict(settings), tuple(self.skipped), tuple(self.warnings)
        )


def _sample_files(path: Path, kind: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("no such file or folder", path=str(path))
    pattern = "samples_*.jsonl" if kind == "lm-eval" else "*_samples_*.jsonl"
    files = sorted(path.rglob(pattern))
    if not files:
        raise InputError(f"no {pattern} files in the folder", path=str(path))
    names = sorted({_harness_task(f, kind) for f in files})
    if len(names) > 1:  # one output folder of `--tasks a,b`: each log belongs to one casceq task
        raise InputError(
            f"the folder holds logs of {len(names)} harness tasks ({', '.join(names)}): give the samples file "
            "(or a folder) of the one task to import",
            path=str(path),
        )
    return files


def _harness_task(sample_file: Path, kind: str) -> str:
    """The harness task a samples file belongs to, read from its name.

    lm-eval writes ``samples_<task>_<date>.jsonl``, lmms-eval ``<date>_samples_<task>.jsonl``.
    """
    stem = sample_file.stem
    if kind == "lm-eval":
        return stem.removeprefix("samples_").rsplit("_", 1)[0]
    return stem.split("_samples_", 1)[-1]


def _results_file(sample_file: Path, kind: str) -> Path | None:
    """The aggregated results file written with a samples file (same folder; same date id if it can tell)."""
    folder = sample_file.parent
    if kind == "lm-eval":
        date = sample_file.stem.rsplit("_", 1)[-1]
        exact = folder / f"results_{date}.json"
        candidates = [exact] if exact.is_file() else sorted(folder.glob("results_*.json"))
    else:
        date = sample_file.name.split("_samples_", 1)[0]
        exact = folder / f"{date}_results.json"
        candidates = [exact] if exact.is_file() else sorted(folder.glob("*_results.json"))
    return candidates[-1] if candidates else None


def _results_model(results: Path | None) -> tuple[str | None, dict[str, Any]]:
    if results is None:
        return None, {}
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable results file: {exc}", path=str(results)) from exc
    if not isinstance(doc, Mapping):
        raise InputError("unreadable results file: not a JSON object", path=str(results))
    raw_config = doc.get("config")
    config: Mapping[str, Any] = raw_config if isinstance(raw_config, Mapping) else {}
    settings = {k: config[k] for k in ("model", "model_args", "batch_size", "gen_kwargs") if k in config}
    if isinstance(doc.get("configs"), Mapping):
        gens = {t: c.get("generation_kwargs") for t, c in doc["configs"].items() if isinstance(c, Mapping)}
        settings["generation_kwargs"] = {t: g for t, g in gens.items() if g}
    settings["results_file"] = results.name
    model = doc.get("model_name") or config.get("model_args") or config.get("model")
    return (str(model) if model else None), settings


def read_lm_eval(path: Path, opts: _Options, kind: str = "lm-eval") -> HarnessImport:
    """Read lm-evaluation-harness (or, with ``kind="lmms-eval"``, lmms-eval) samples files."""
    reader = _Reader(opts)
    files = _sample_files(path, kind)
    chosen = opts.filter
    for file in files:
        for number, sample in read_jsonl(file):
            where = f"{file}:{number}"
            name = sample.get("filter", "none")
            chosen = chosen or name  # default: the first filter of the log
            if name != chosen:
                reader.skipped.append(f"{where}: filter {name!r} (importing filter {chosen!r}; see --filter)")
                continue
            if opts.id_field is not None:
                doc = sample.get("doc")
                if not isinstance(doc, Mapping) or opts.id_field not in doc:
                    reader.errors.append(f"{where}: doc has no field {opts.id_field!r} (--id-field)")
                    continue
                example_id: Any = doc[opts.id_field]
            else:
                example_id = sample.get("doc_id")
            if "target" not in sample:
                reader.errors.append(f"{where}: no 'target' (gold) field")
                continue
            reader.add(where, example_id, sample["target"], sample)
    model, settings = _results_model(_results_file(files[0], kind))
    return reader.result(model, settings)


def _message_text(content: Any) -> str:
    """Text of an inspect ChatMessage content: a string, or a list of content blocks (``type: text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", "")) for b in content if isinstance(b, Mapping) and b.get("type") == "text"
        )
    return ""


def _zip_json(zf: zipfile.ZipFile, name: str, path: Path) -> Any:
    try:
        return json.loads(zf.read(name).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable member {name} of the .eval log ({exc})", path=str(path)) from exc


def _inspect_docs(path: Path) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """(eval header, [(where, sample)]) of an inspect ``.json`` or ``.eval`` log."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                head_name = "header.json" if "header.json" in names else "_journal/start.json"
                if head_name not in names:
                    raise InputError("an .eval log without header.json", path=str(path))
                header = _zip_json(zf, head_name, path)
                samples = [
                    (f"{path}!{n}", _zip_json(zf, n, path))
                    for n in sorted(names)
                    if n.startswith("samples/") and n.endswith(".json")
                ]
        except zipfile.BadZipFile as exc:
            raise InputError(f"not a readable .eval log ({exc})", path=str(path)) from exc
        if not isinstance(header, Mapping):
            raise InputError(f"{head_name} of the .eval log is not a JSON object", path=str(path))
        return dict(header), samples
    if path.suffix == ".eval":
        raise InputError("not an inspect .eval log: an .eval log is a zip archive (is the file truncated?)",
                         path=str(path))  # fmt: skip
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not an inspect log: {exc}", path=str(path)) from exc
    if not isinstance(doc, Mapping) or "eval" not in doc:
        raise InputError("not an inspect log (no 'eval' header)", path=str(path))
    samples = doc.get("samples") or []
    if not isinstance(samples, list):
        raise InputError("not an inspect log ('samples' is not a list)", path=str(path))
    return dict(doc), [(f"{path} sample {i}", s) for i, s in enumerate(samples)]


def _epoch(sample: Mapping[str, Any]) -> int:
    value = sample.get("epoch", 1)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise ValueError(f"epoch {value!r} is not a whole number")
    return int(value)


def _inspect_answer(sample: Mapping[str, Any]) -> str | None:
    """The model's answer text, or None when the sample ended in an error or holds no model output.

    Raises:
        ValueError: An ``output`` that is not shaped as inspect writes it.
    """
    if sample.get("error"):
        return None
    output = sample.get("output")
    if output is None:
        return None
    if not isinstance(output, Mapping):
        raise ValueError(f"'output' must be an object, got {type(output).__name__}")
    choices = output.get("choices") or []
    if not choices:
        return None
    first = choices[0]
    message = first.get("message") if isinstance(first, Mapping) else None
    if not isinstance(message, Mapping):
        raise ValueError("output.choices[0] has no 'message' object")
    return _message_text(message.get("content"))


def _sample_error(sample: Mapping[str, Any]) -> str:
    error = sample.get("error")
    message = error.get("message") if isinstance(error, Mapping) else error
    return f"ended in an error ({message})" if message else "has no model output"


def read_inspect(path: Path, opts: _Options) -> HarnessImport:
    """Read inspect_ai eval logs (``.json`` or ``.eval``; a folder: every log in it)."""
    files = [path] if path.is_file() else sorted([*path.glob("*.eval"), *path.glob("*.json")])
    if not files:
        raise InputError("no such file, or no .eval/.json logs in the folder", path=str(path))
    reader = _Reader(opts)
    model: str | None = None
    settings: dict[str, Any] = {}
    for file in files:
        header, samples = _inspect_docs(file)
        raw_eval = header.get("eval")
        ev: Mapping[str, Any] = raw_eval if isinstance(raw_eval, Mapping) else {}
        model = model or ev.get("model")
        settings = settings or {
            k: ev[k] for k in ("model_generate_config", "model_args", "task", "model_base_url") if ev.get(k)
        }
        status = header.get("status")
        if status not in (None, "success"):
            reader.warnings.append(
                f"{file}: the eval's status is {status!r}, not 'success': its samples may be incomplete"
            )
        for where, sample in samples:
            if not isinstance(sample, Mapping):
                reader.errors.append(f"{where}: a sample must be an object")
                continue
            try:
                epoch = _epoch(sample)
                text = _inspect_answer(sample)
            except ValueError as exc:
                reader.errors.append(f"{where}: {exc}")
                continue
            if epoch != opts.epoch:
                reader.skipped.append(f"{where}: epoch {epoch} (importing epoch {opts.epoch})")
                continue
            if (
                text is None
            ):  # not a model's answer: scoring it INVALID would count a failure as a wrong answer
                reader.skipped.append(
                    f"{where}: the sample {_sample_error(sample)}, left out (not an answer)"
                )
                continue
            example_id = sample.get("id")
            if opts.id_field is not None:
                meta = sample.get("metadata")
                if not isinstance(meta, Mapping) or opts.id_field not in meta:
                    reader.errors.append(f"{where}: metadata has no field {opts.id_field!r} (--id-field)")
                    continue
                example_id = meta[opts.id_field]
            reader.add(where, example_id, sample.get("target"), {"resps": [[text]]})
    return reader.result(model, settings)


def read_harness(
    kind: str,
    path: str | Path,
    *,
    task: Task,
    system: str,
    condition: str = CLEAN,
    backbone: str | None = None,
    id_field: str | None = None,
    filter_name: str | None = None,
    epoch: int = 1,
) -> HarnessImport:
    """Read one harness log (file or folder) as predictions of ``system`` on ``task``.

    Args:
        kind: ``lm-eval``, ``lmms-eval`` or ``inspect``.
        path: A samples file / eval log, or a folder of them.
        task: The casceq task the log evaluated (its parser reads generated answers).
        system: System name to give the predictions.
        condition: Audio condition name (default ``clean``).
        backbone: LLM backbone, for matched-pair detection (the logs do not say it).
        id_field: Take example ids from this field of the document (lm-eval ``doc``, inspect ``metadata``)
            instead of the harness's document id.
        filter_name: lm-eval filter to import (default: the first in the log).
        epoch: inspect epoch to import (default 1).

    Raises:
        InputError: Unknown harness, unreadable logs, or bad documents (all listed, file and line named).
    """
    opts = _Options(task, system, condition, backbone, id_field, filter_name, epoch)
    p = Path(path)
    if kind in ("lm-eval", "lmms-eval"):
        return read_lm_eval(p, opts, kind)
    if kind == "inspect":
        return read_inspect(p, opts)
    raise InputError(f"unknown harness {kind!r}; known: {', '.join(HARNESSES)}")


def check_against_examples(predictions: Sequence[Prediction], examples: Sequence[Example]) -> str | None:
    """Compare imported predictions with the task's own examples (a user task's data file).

    Returns:
        A warning when no imported id is an example id (the logs number documents differently: ``--id-field``),
        else None.

    Raises:
        InputError: An imported gold differs from the example's label (ids point at the wrong documents).
    """
    gold = {ex.id: ex.label for ex in examples}
    shared = [p for p in predictions if p.example_id in gold]
    if not shared:
        return (
            f"none of the {len(predictions)} imported ids ({predictions[0].example_id!r}, ...) is an example id of "
            f"task {predictions[0].task!r} ({next(iter(gold))!r}, ...): give --id-field to use a document field"
        )
    wrong = [p for p in shared if p.gold != gold[p.example_id]]
    if wrong:
        p = wrong[0]
        raise InputError(
            f"{len(wrong)} imported gold label(s) differ from the task's data, e.g. example {p.example_id!r}: "
            f"{p.gold!r} in the log, {gold[p.example_id]!r} in the data (do the ids name the same documents?)"
        )
    return None
