"""The implicit cascade (Table 6): the speech LLM's lens text at one layer, read by a text copy of its backbone.

For each item: the speech LLM answers from audio; the lens of ``--layer`` (default: last) at the audio positions
is decoded and given as the transcript to the backbone (``--backbone same``: the speech LLM's own language
model on text; or a text LLM spec); the explicit cascade gives the backbone an ASR transcript (``--asr``).
Reports kappa_impl = kappa(implicit, speech LLM), kappa_casc = kappa(cascade, speech LLM) and the accuracies.

Items: ``--items FILE.jsonl`` (one object per line: ``id``, ``audio``, ``label``, optional ``text`` and
``choices``) or a task's examples spoken by ``--voice`` into ``--audio-dir`` (``--n``, ``--seed``).
Writes ``OUT/mech/implicit.json`` (schema in ``casceq.mech.implicit``) and ``OUT/mech/implicit.md``.

``--calibration RUN_DIR`` answers with a finished ``casceq run`` folder's decision rule (score mode): the speech
LLM's label scores are shifted by the run's held-out offsets of its speech-LLM system on ``--model`` (or
``--speech-system``), and ``--cascade NAME`` makes the text copy that run system's LLM, loaded with its settings
(the same shots), answering with its offsets. The speech LLM is then loaded as the run loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_item_arguments(parser: argparse.ArgumentParser) -> None:
    """Options naming the model, tasks and evaluated items (shared with ``casceq erase``)."""
    parser.add_argument(
        "--model", required=True, help="speech LLM spec 'family:model' (e.g. ultravox-native:DIR)"
    )
    parser.add_argument("--task", action="append", required=True, help="task name (repeatable)")
    parser.add_argument("--items", help="JSONL items: id, audio, label[, text, choices] (one task only)")
    parser.add_argument("--voice", action="append", default=[], help="TTS voice speaking the task's examples")
    parser.add_argument("--audio-dir", help="folder of synthesised audio (with --voice)")
    parser.add_argument("--n", type=int, default=50, help="examples per task (with --voice; default 50)")
    parser.add_argument(
        "--seed",
        type=int,
        help="subsampling seed (default 0; with --calibration the run's seed, and another one is refused)",
    )
    parser.add_argument("--data-dir", help="datasets root (default: casceq.paths.datasets_dir())")
    parser.add_argument(
        "--mode", choices=("score", "generate"), default="score", help="answer mode (default score)"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="weights dtype")
    parser.add_argument(
        "--calibration",
        metavar="RUN_DIR",
        help="answer with a casceq run folder's calibration offsets (score mode; default: raw argmax)",
    )
    parser.add_argument(
        "--speech-system",
        help="with --calibration: the run's system whose offsets the speech LLM takes (default: model = --model)",
    )
    parser.add_argument("--out", required=True, help="output folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``implicit`` options."""
    add_item_arguments(parser)
    parser.add_argument("--layer", type=int, help="lens layer (default: the last)")
    parser.add_argument(
        "--asr",
        default="reference",
        help="ASR spec of the explicit cascade (e.g. faster-whisper:base), or 'reference' (the gold text)",
    )
    parser.add_argument(
        "--backbone", default="same", help="'same' (the speech LLM's own LM on text) or a text LLM spec"
    )
    parser.add_argument(
        "--cascade",
        metavar="SYSTEM",
        help="with --calibration: the text copy is this run system's LLM (its settings and offsets)",
    )


def run_speech_system(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """With ``--calibration``: a loader of the run's speech-LLM system and its offsets per task.

    The system is the run's speech LLM on ``--model`` (or ``--speech-system``), loaded as the run loads it (its
    settings and seed: a matched prompt draws the same shots). Without ``--calibration``: ``--model`` loaded
    with ``--dtype`` and no offsets.

    Raises:
        InputError: No such system, no unique system on ``--model``, or a system without a fit (names given).
    """
    from casceq.commands.lens import load_model
    from casceq.errors import InputError

    if not args.calibration:
        if args.speech_system:
            raise InputError("--speech-system needs --calibration RUN_DIR")
        args.seed = 0 if args.seed is None else args.seed
        return (lambda: load_model(args.model, dtype=args.dtype)[0]), {}
    from casceq.run.config import load_run_config

    cfg = load_run_config(args.calibration)
    # The run's split: its seed put the evaluated items at the start of the ranking and the calibration items
    # at its far end. Another seed draws other items, some of them ones the offsets were fitted on.
    if args.seed is not None and args.seed != cfg.seed:
        raise InputError(
            f"--seed {args.seed} differs from the run's seed {cfg.seed}: its calibration items could be evaluated; "
            "leave --seed out to take the run's",
            path=args.calibration,
        )
    args.seed = cfg.seed
    speech = [s for s in cfg.systems if s.kind == "speech_llm"]
    if args.speech_system:
        chosen = [s for s in speech if s.name == args.speech_system]
    else:
        chosen = [s for s in speech if s.model == args.model]
    if len(chosen) != 1:
        raise InputError(
            f"pick one speech-LLM system with --speech-system; the run has "
            f"{[(s.name, s.model) for s in speech]} (--model {args.model})",
            path=args.calibration,
        )
    system, found = _calibrated_system(args.calibration, cfg, chosen[0])
    return (lambda: system._get("speech")), found


def _calibrated_system(run_dir: str, cfg: Any, spec: Any) -> tuple[Any, dict[str, Any]]:
    """The run's system of ``spec`` (back ends built lazily) and its offsets per task.

    Raises:
        InputError: The run holds no calibration of that system.
    """
    from casceq.errors import InputError
    from casceq.run.build import build_system
    from casceq.run.calibrate import run_offsets

    found = run_offsets(run_dir).get(spec.name)
    if not found:
        raise InputError(f"the run holds no calibration of {spec.name!r}", path=run_dir)
    return build_system(spec, cfg), found


def cascade_llm(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The run system ``--cascade``'s LLM (its settings) and its offsets per task."""
    from casceq.errors import InputError
    from casceq.run.config import load_run_config

    if not args.calibration:
        raise InputError("--cascade names a system of --calibration RUN_DIR: give both")
    if args.backbone != "same":
        raise InputError("give --backbone or --cascade, not both")
    cfg = load_run_config(args.calibration)
    specs = [s for s in cfg.systems if s.name == args.cascade and s.kind in ("cascade", "text")]
    if not specs:
        names = [s.name for s in cfg.systems if s.kind in ("cascade", "text")]
        raise InputError(
            f"no cascade or text system {args.cascade!r}; the run has {names}", path=args.calibration
        )
    system, found = _calibrated_system(args.calibration, cfg, specs[0])
    return system._get("llm"), found


def read_items(path: str, task: Any) -> list[Any]:
    """Examples with audio from a JSONL file (errors name the file and line)."""
    from casceq.errors import InputError
    from casceq.types import AudioRef, Example

    file = Path(path)
    if not file.is_file():
        raise InputError("items file not found", path=path)
    out = []
    for no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = Path(row["audio"])
            audio = audio if audio.is_absolute() else file.parent / audio
            ex = Example(
                str(row["id"]),
                task.name,
                str(row.get("text", "")),
                str(row["label"]),
                tuple(row.get("choices", ())),
                AudioRef(str(audio)),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"bad item ({exc!r}); need id, audio, label", path=path, line=no) from exc
        if task.labels and ex.label not in task.labels:
            raise InputError(f"label {ex.label!r} is not one of {list(task.labels)}", path=path, line=no)
        out.append(ex)
    if not out:
        raise InputError("no items", path=path)
    return out


def load_items(args: argparse.Namespace, task: Any) -> tuple[list[Any], list[Any]]:
    """Load the evaluated examples (with audio) of one task and their 16 kHz waveforms."""
    from casceq.audio.io import load_audio
    from casceq.errors import InputError

    if args.items:
        if len(args.task) > 1:
            raise InputError("--items holds one task's items: give one --task")
        examples = read_items(args.items, task)
    else:
        if not args.voice or not args.audio_dir:
            raise InputError("give --items, or --voice and --audio-dir to speak the task's examples")
        from casceq.run.items import spoken_items
        from casceq.tasks import load_examples

        seed = 0 if args.seed is None else args.seed
        base = load_examples(task.name, n=args.n, seed=seed, data_dir=args.data_dir)
        examples = [it.example for it in spoken_items(base, args.voice, Path(args.audio_dir))]
    from casceq.run.leakage import check_not_trained_on

    check_not_trained_on(args.model, examples)
    if getattr(args, "calibration", None):
        from casceq.run.calibrate import check_not_fitted

        check_not_fitted(args.calibration, task.name, [ex.id for ex in examples])
    audios = []
    for ex in examples:
        if ex.audio is None:
            raise InputError(f"item {ex.id} has no audio")
        audios.append(load_audio(ex.audio.path, 16000))
    return examples, audios


def _transcripts(spec: str, examples: list[Any], audios: list[Any]) -> list[str]:
    if spec == "reference":
        return [ex.text for ex in examples]
    from casceq.systems.asr import make_asr

    return [t.text for t in make_asr(spec).transcribe(audios)]


def run(args: argparse.Namespace) -> int:
    """Run the implicit and explicit cascades against the speech LLM for each task."""
    from casceq.commands.lens import provenance
    from casceq.mech.implicit import SpeechBackboneLLM, implicit_cascade, table_markdown, write_results
    from casceq.tasks import get_task

    prov = provenance(
        ["casceq", "implicit", *sys.argv[2:]]
    )  # before the run: the checkout may move on meanwhile
    load, speech_off = run_speech_system(args)  # config errors before any model is loaded
    llm, text_off = cascade_llm(args) if args.cascade else (None, {})
    backend = load()
    if llm is None and args.backbone == "same":
        llm = SpeechBackboneLLM(backend)
    elif llm is None:
        from casceq.systems.llm import make_llm

        llm = make_llm(args.backbone)
    results = []
    for name in args.task:
        task = get_task(name)
        examples, audios = load_items(args, task)
        transcripts = _transcripts(args.asr, examples, audios)
        results.append(
            implicit_cascade(
                backend,
                llm,
                task,
                examples,
                audios,
                transcripts,
                layer=args.layer,
                mode=args.mode,
                model=args.model,
                asr=args.asr,
                speech_offsets=speech_off.get(name),
                text_offsets=text_off.get(name),
            )
        )
    path = write_results(args.out, results, prov)
    print(table_markdown(results), end="")
    print(f"wrote {path}")
    return 0
