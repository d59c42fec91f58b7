"""LEACE concept erasure during generation (the paper's Table 7 / Figure 6), with held-out completeness checks.

Fit, then apply. For each concept (``casceq.mech.erasure_concepts``) and each probed layer in increasing order,
the states at the audio positions of the fitting utterances are recomputed **with the erasers of the earlier
layers active** (sequential fitting: a later eraser sees what the model really computes once the earlier ones
act) and an eraser is fitted with ``concept_erasure.LeaceFitter(D, k, affine=False)`` — the paper's "no bias
centering": ``x -> x - L R x``, no mean restored; targets one-hot (continuous for bag-of-characters).

``ErasureHooks`` then applies all layers' erasers at once through forward hooks (a pre-hook for layer 0, the
embeddings; a forward hook on ``layers[l-1]`` for layer l; a Tensor or a tuple output are both handled). They
act on **every forward pass and every position** (``positions="all"``, the paper's setting): the prompt pass
(audio, instruction and chat tokens) and each generated token's pass; label scoring is one such pass.
``positions="audio"`` erases only the audio positions of the prompt pass and leaves generated tokens alone.
Removing the hooks restores the model exactly (nothing is changed in place).

Completeness: for each concept and layer the fitting utterances are split 80/20 **by utterance**; an eraser
fitted on the 80% is applied to both parts and a linear probe (logistic regression; ridge R² for
bag-of-characters) trained on the erased 80% is scored on the erased 20%, next to the same probe before erasure
and chance (the training majority class; R² 0).

``mech/erasure.json`` (``ErasureResult.to_json``)::

    {"kind": "erasure", "version": 1, "model": str, "layers": [int], "positions": "all"|"audio",
     "affine": false, "ctc_targets": str, "n_fit_utterances": int, "extra": {...},
     "calibration": {task: [C offsets]},  # label-score offsets applied in every condition ({}: raw argmax)
     "accuracy": [{"task", "condition", "n", "accuracy", "same_as_none", "correct": [bool per item]}, ...],
     "gold": {task: [gold label per item]}, "items": {task: [example id per item]},
     "fit_items": [the fitting utterances' items],
     "probes": [{"concept", "layer", "metric": "accuracy"|"r2", "before", "after", "chance", "rank",
                 "n_train", "n_test"}, ...],
     "support": [{"concept", "dims": [str], "n_utterances": [int per dim], "n_positions": [int per dim],
                  "total_utterances", "total_positions"}, ...],      # per fitted concept (absent in old files)
     "diagnostic": null | {"readout", "n_train", "n_test", "n_test_items", "n_boot", "level", "seed",
                           "test_items": [str], "rows": [{"concept", "layer", "control", "r2_none", "r2_erased",
                           "r2_control", "drop", "drop_ci", "control_drop", "control_drop_ci", "excess",
                           "excess_ci", "rank", "control_rank", "verdict"}, ...]}   # the §5.4 diagnostic

``condition`` is ``"none"`` or a concept name (``random``, ``random-2`` .. ``random-K`` for ``n_random`` draws of
the random subspace); ``same_as_none`` is the fraction of answers unchanged by erasure. The fitting utterances and
the evaluated items must be different items (checked: an overlap is an error naming the count).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from casceq.errors import InputError, LeakageError
from casceq.mech.adapters import layout_of
from casceq.mech.capture import SAMPLE_RATE, position_frames, run_clip
from casceq.mech.erasure_concepts import (
    CONCEPTS,
    CTC_TARGETS,
    ConceptSupport,
    ErasureResult,
    TaskAccuracy,
    concept_support,
    define_concept,
    eraser_rank,
    heldout_check,
    random_eraser,
)
from casceq.mech.erasure_diagnostic import (
    LEVEL,
    N_BOOT,
    READOUT,
    TextDiagnostic,
    check_heldout,
    text_decodability,
)
from casceq.mech.leace import fit_eraser
from casceq.systems.answer import answer_batch, check_offsets
from casceq.systems.compose import speech_prompt

Positions = Literal["all", "audio"]


@dataclass(frozen=True)
class FitClip:
    """One fitting utterance: id, 16 kHz waveform [S], transcript, and its per-position frames (or None)."""

    id: str
    audio: np.ndarray
    transcript: str
    prompt: str = "Transcribe the audio."


class ErasureHooks:
    """Context manager applying ``{layer: eraser}`` at once through forward hooks (see the module docstring)."""

    def __init__(self, backend: Any, layout: Any, erasers: Mapping[int, Any], positions: Positions = "all"):
        if positions not in ("all", "audio"):
            raise InputError(f"positions must be 'all' or 'audio', not {positions!r}")
        self.backend, self.layout, self.positions = backend, layout, positions
        self.erasers = (
            {layer: erasers[layer] for layer in layout.check_layers(list(erasers))} if erasers else {}
        )
        self._handles: list[Any] = []
        self._mask: Any = None
        self._wrapped = False
        self._cast: dict[tuple[int, Any], Any] = {}

    def _erase(self, layer: int, h: Any) -> Any:
        key = (layer, h.dtype)
        if key not in self._cast:  # erasers are float32; apply in the model's dtype and device
            e = self.erasers[layer]
            self._cast[key] = dataclasses.replace(
                e,
                proj_left=e.proj_left.to(h.device, h.dtype),
                proj_right=e.proj_right.to(h.device, h.dtype),
                bias=None if e.bias is None else e.bias.to(h.device, h.dtype),
            )
        eraser = self._cast[key]
        if self.positions == "all":
            return eraser(h)
        mask = self._mask
        if mask is None or tuple(mask.shape) != tuple(h.shape[:2]):
            return h  # a generated token's pass (or no audio): left alone in "audio" mode
        out = h.clone()
        out[mask] = eraser(h[mask])
        return out

    def __enter__(self) -> ErasureHooks:
        for layer in self.erasers:
            if layer == 0:

                def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                    if args:
                        return (self._erase(0, args[0]), *args[1:]), kwargs
                    return args, {**kwargs, "hidden_states": self._erase(0, kwargs["hidden_states"])}

                self._handles.append(self.layout.layers[0].register_forward_pre_hook(pre, with_kwargs=True))
            else:

                def post(_m: Any, _args: Any, out: Any, layer: int = layer) -> Any:
                    # transformers 5 layers return a Tensor; older ones a tuple (state, attentions, ...).
                    if isinstance(out, tuple):
                        return (self._erase(layer, out[0]), *out[1:])
                    return self._erase(layer, out)

                self._handles.append(self.layout.layers[layer - 1].register_forward_hook(post))
        if self.positions == "audio" and hasattr(self.backend, "encode"):
            original = self.backend.encode

            def encode(*args: Any, **kwargs: Any) -> Any:
                batch = original(*args, **kwargs)
                self._mask = (batch.input_ids == self.backend.audio_token_id).to(self.backend.model.device)
                return batch

            self.backend.encode = encode  # instance attribute: removed again on exit
            self._wrapped = True
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._wrapped:
            del self.backend.encode
            self._wrapped = False
        self._mask = None


def collect_states(backend: Any, layout: Any, clips: Sequence[FitClip], layer: int) -> list[np.ndarray]:
    """States [P, D] (float32) at ``layer`` over the audio positions of each clip, under any active hooks.

    Raises:
        InputError: NaN or infinite states (the utterance named).
    """
    return collect_layers(backend, layout, clips, [layer])[layer]


def collect_layers(
    backend: Any, layout: Any, clips: Sequence[FitClip], layers: Sequence[int]
) -> dict[int, list[np.ndarray]]:
    """Like ``collect_states`` for several layers from one pass per clip: ``{layer: [states [P, D]]}``."""
    limit = int(layout.window_s * SAMPLE_RATE) if layout.window_s else None
    chosen = list(layout.check_layers(layers))
    out: dict[int, list[np.ndarray]] = {layer: [] for layer in chosen}
    for clip in clips:
        x = run_clip(backend, layout, clip.audio[:limit], chosen, prompt=clip.prompt)
        for k, layer in enumerate(chosen):
            if not np.isfinite(x[k]).all():
                raise InputError(f"utterance {clip.id!r}: NaN or infinite states at layer {layer}")
            out[layer].append(x[k])
    return out


def clip_frames(layout: Any, clips: Sequence[FitClip]) -> list[np.ndarray]:
    """Per-position frames [P, 5] of each clip (energy and F0, ``casceq.mech.capture.position_frames``)."""
    limit = int(layout.window_s * SAMPLE_RATE) if layout.window_s else None
    out = []
    for clip in clips:
        wav = clip.audio[:limit]
        out.append(position_frames(wav, layout, layout.n_positions(wav))[0])
    return out


def conform_frames(layout: Any, clip: FitClip, frames: np.ndarray | None, n: int) -> np.ndarray | None:
    """``frames`` with one row per audio position the model produced (``n``), recomputed when they differ.

    ``clip_frames`` counts positions from the clip's duration (ceil); a speech LLM whose projector stacks
    encoder frames can emit one position fewer (22 for 23 on a real RAVDESS clip), which used to fail the fit.
    """
    if frames is None or len(frames) == n:
        return frames
    limit = int(layout.window_s * SAMPLE_RATE) if layout.window_s else None
    return position_frames(clip.audio[:limit], layout, n)[0]


def fit_erasers(
    backend: Any,
    clips: Sequence[FitClip],
    concept: Any,
    layers: Sequence[int],
    *,
    frames: Sequence[Any] | None = None,
    affine: bool = False,
    positions: Positions = "all",
    seed: int = 0,
) -> tuple[dict[int, Any], list[Any]]:
    """Fit one concept's erasers layer by layer, each with the earlier layers' erasers active.

    Args:
        backend: A casceq speech-LLM backend.
        clips: Fitting utterances.
        concept: A ``Concept`` (``define_concept``).
        layers: Probed layers (sorted; checked against the model's range).
        frames: Per-clip frames (needed by the acoustic concept).
        affine: ``LeaceFitter(affine=...)``; False is the paper's "no bias centering".
        positions: Hook positions while recomputing states (as during evaluation).
        seed: Seed of the held-out split.

    Returns:
        ``({layer: eraser}, [ProbeCheck per layer])``; :func:`fit_concept` also gives the concept's support.
    """
    erasers, checks, _ = fit_concept(
        backend, clips, concept, layers, frames=frames, affine=affine, positions=positions, seed=seed
    )
    return erasers, checks


def fit_concept(
    backend: Any,
    clips: Sequence[FitClip],
    concept: Any,
    layers: Sequence[int],
    *,
    frames: Sequence[Any] | None = None,
    affine: bool = False,
    positions: Positions = "all",
    seed: int = 0,
) -> tuple[dict[int, Any], list[Any], ConceptSupport]:
    """:func:`fit_erasers` plus the concept's :class:`ConceptSupport` (per-dimension fitting counts)."""
    layout = layout_of(backend)
    chosen = layout.check_layers(layers)
    fr = list(frames) if frames is not None else [None] * len(clips)
    erasers: dict[int, Any] = {}
    checks = []
    support = None
    for layer in chosen:
        with ErasureHooks(backend, layout, erasers, positions):
            states = collect_states(backend, layout, clips, layer)
        fr = [conform_frames(layout, c, f, len(x)) for c, f, x in zip(clips, fr, states, strict=True)]
        targets = [
            concept.targets(c.transcript, len(x), f) for c, x, f in zip(clips, states, fr, strict=True)
        ]
        erasers[layer] = fit_eraser(states, targets, affine=affine)
        checks.append(heldout_check(concept, layer, states, clips, fr, affine=affine, seed=seed))
        if support is None:  # positions are the same at every layer
            support = concept_support(
                concept,
                [concept.carried(c.transcript, len(x), f) for c, x, f in zip(clips, states, fr, strict=True)],
            )
    assert support is not None
    return erasers, checks, support


def answer_labels(
    backend: Any,
    task: Any,
    examples: Sequence[Any],
    audios: Sequence[np.ndarray],
    mode: str,
    offsets: np.ndarray | None = None,
) -> list[str]:
    """Answer ``examples`` with the speech LLM (under whatever hooks are active); parsed labels.

    ``offsets``: [C] calibration offsets subtracted from the label scores before argmax (score mode).
    """
    prompts = [speech_prompt(task, ex) for ex in examples]
    wavs = list(audios)
    got = answer_batch(
        task=task,
        examples=examples,
        mode=mode,  # type: ignore[arg-type]
        score=lambda opts: backend.score_options(wavs, prompts, opts),
        generate=lambda k: backend.generate(wavs, prompts, k),
        offsets=offsets,
    )
    return [label for _, label, _ in got]


def run_erasure(
    backend: Any,
    clips: Sequence[FitClip],
    evaluations: Sequence[tuple[Any, Sequence[Any], Sequence[np.ndarray]]],
    *,
    layers: Sequence[int] | None = None,
    concepts: Sequence[str] | None = None,
    affine: bool = False,
    positions: Positions = "all",
    mode: str = "score",
    seed: int = 0,
    model: str = "",
    offsets: Mapping[str, np.ndarray] | None = None,
    n_random: int = 1,
    heldout: Sequence[FitClip] = (),
    n_boot: int = N_BOOT,
) -> Any:
    """Fit every concept's erasers and answer every task under each erasure condition (and ``none``).

    Args:
        backend: A casceq speech-LLM backend.
        clips: Fitting utterances (audio + transcript).
        evaluations: ``(task, examples, audios)`` per task.
        layers: Probed layers (default: the paper's fractions of depth).
        concepts: Subset of ``CONCEPTS`` (default: all). ``random`` takes its rank from the text eraser.
        affine: ``LeaceFitter(affine=...)`` (False: the paper's no bias centering).
        positions: ``"all"`` or ``"audio"`` (see ``ErasureHooks``).
        mode: ``"score"`` or ``"generate"`` (``casceq.systems.answer.answer_batch``).
        seed: Seed of the random control and of the held-out splits.
        model: Model spec recorded in the result.
        offsets: Task name -> [C] calibration offsets of the speech LLM (score mode; e.g. a run's held-out
            fit, ``casceq.run.calibrate.run_offsets``). The unerased model's offsets are applied under every
            condition: erasure is judged with the same decision rule as the baseline. Recorded in the result.
        n_random: Draws of the random subspace (conditions ``random``, ``random-2`` ..), each of the text
            eraser's rank, with seeds ``seed + 1000 j + layer`` (the first is the single draw of older results).
        heldout: Utterances the erasers are NOT fitted on: when given, the §5.4 text-decodability diagnostic
            (:func:`text_diagnostic`) runs on them for every acoustic concept (``acoustic`` is fitted for it when
            no acoustic concept is asked for) and is the result's ``diagnostic``.
        n_boot: Bootstrap resamples of the diagnostic.

    Raises:
        InputError: Unknown concepts, ``n_random < 1``, or fitting utterances that are evaluated items;
            ``LeakageError`` when a held-out utterance's item is a fitting one.
    """
    check_disjoint(clips, evaluations)
    if heldout:
        check_heldout([c.id for c in clips], [c.id for c in heldout])
    if n_random < 1:
        raise InputError(f"n_random must be >= 1, got {n_random}")
    layout = layout_of(backend)
    chosen = layout.check_layers(layers if layers is not None else layout.default_layers())
    wanted = list(concepts or CONCEPTS)
    unknown = [c for c in wanted if c not in CONCEPTS]
    if unknown:
        raise InputError(f"unknown concepts {unknown}; known: {', '.join(CONCEPTS)}")
    acoustic = [c for c in wanted if c.startswith("acoustic")] or (["acoustic"] if heldout else [])
    frames = clip_frames(layout, clips) if acoustic else None
    transcripts = [c.transcript for c in clips]
    fitted: dict[str, dict[int, Any]] = {}
    checks: list[Any] = []
    extra_fits = ["text"] if "random" in wanted and "text" not in wanted else []
    extra_fits += [c for c in acoustic if c not in wanted]
    supports = []
    for name in [c for c in wanted if c != "random"] + extra_fits:
        concept = define_concept(name, transcripts, frames)
        fitted[name], found, support = fit_concept(
            backend, clips, concept, chosen, frames=frames, affine=affine, positions=positions, seed=seed
        )
        checks += found if name in wanted else []
        supports.append(support)
    draws = [f"random-{j + 1}" if j else "random" for j in range(n_random)] if "random" in wanted else []
    for j, name in enumerate(draws):
        fitted[name] = {
            layer: random_eraser(layout.width, eraser_rank(fitted["text"][layer]), seed + 1000 * j + layer)
            for layer in chosen
        }
    conditions = [c for c in wanted if c != "random"] + draws
    calibration = {}
    for task, _, _ in evaluations:
        off = (offsets or {}).get(task.name)
        if off is not None and mode == "score" and not task.open_answer:
            calibration[task.name] = check_offsets(task, off).tolist()
    accuracy = []
    for task, examples, audios in evaluations:
        off = np.asarray(calibration[task.name]) if task.name in calibration else None
        none = answer_labels(backend, task, examples, audios, mode, off)
        for cond in ["none", *conditions]:
            if cond == "none":
                labels = none
            else:
                with ErasureHooks(backend, layout, fitted[cond], positions):
                    labels = answer_labels(backend, task, examples, audios, mode, off)
            correct = [task.is_correct(lab, ex) for lab, ex in zip(labels, examples, strict=True)]
            same = float(np.mean([a == b for a, b in zip(labels, none, strict=True)]))
            accuracy.append(
                TaskAccuracy(task.name, cond, len(examples), float(np.mean(correct)), same, tuple(correct))
            )
    return ErasureResult(
        model,
        chosen,
        positions,
        affine,
        CTC_TARGETS,
        len(clips),
        tuple(accuracy),
        tuple(checks),
        calibration=calibration,
        gold={task.name: [ex.label for ex in examples] for task, examples, _ in evaluations},
        items={task.name: [ex.id for ex in examples] for task, examples, _ in evaluations},
        fit_items=sorted({c.id.split("@")[0] for c in clips}),
        support=tuple(supports),
        diagnostic=(
            text_diagnostic(
                backend,
                fitted,
                clips,
                heldout,
                chosen,
                acoustic,
                positions=positions,
                seed=seed,
                n_boot=n_boot,
            )
            if heldout
            else None
        ),
    )


def text_diagnostic(
    backend: Any,
    fitted: Mapping[str, Mapping[int, Any]],
    clips: Sequence[FitClip],
    heldout: Sequence[FitClip],
    layers: Sequence[int],
    concepts: Sequence[str],
    *,
    positions: Positions = "all",
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> TextDiagnostic:
    """The §5.4 diagnostic (``casceq.mech.erasure_diagnostic``) with the fitted erasers, on held-out clips.

    States are collected by running the model with each condition's erasers active at all ``layers`` at once
    (no erasure; each concept's erasers; a random subspace of the concept's rank at each layer, seeds
    ``seed + 7919 + 1000 j + layer``). The readout is trained on ``clips`` (the erasers' fitting utterances)
    and scored on ``heldout``.

    Raises:
        LeakageError: A held-out utterance's item among ``clips``.
    """
    check_heldout([c.id for c in clips], [c.id for c in heldout])
    layout = layout_of(backend)
    every = [*clips, *heldout]
    means: dict[str, dict[int, np.ndarray]] = {}

    def collect(name: str, erasers: Mapping[int, Any]) -> None:
        with ErasureHooks(backend, layout, erasers, positions):
            states = collect_layers(backend, layout, every, layers)
        means[name] = {layer: np.stack([x.mean(0) for x in states[layer]]) for layer in layers}

    collect("none", {})
    train, test = list(range(len(clips))), list(range(len(clips), len(every)))
    rows = []
    for j, concept in enumerate(concepts):
        control = f"random-{concept}-rank"
        ranks = {layer: eraser_rank(fitted[concept][layer]) for layer in layers}
        collect(concept, fitted[concept])
        collect(
            control,
            {
                layer: random_eraser(layout.width, ranks[layer], seed + 7919 + 1000 * j + layer)
                for layer in layers
            },
        )
        rows += text_decodability(
            means,
            [c.transcript for c in every],
            [c.id for c in every],
            train,
            test,
            concept=concept,
            control=control,
            ranks={concept: ranks, control: ranks},
            n_boot=n_boot,
            seed=seed,
        )
    return TextDiagnostic(
        READOUT,
        len(clips),
        len(heldout),
        len({c.id.split("@")[0] for c in heldout}),
        n_boot,
        LEVEL,
        seed,
        tuple(sorted({c.id.split("@")[0] for c in heldout})),
        tuple(rows),
    )


def check_disjoint(clips: Sequence[FitClip], evaluations: Sequence[tuple[Any, Sequence[Any], Any]]) -> None:
    """Refuse fitting utterances that are evaluated items (compared by item: the id before "@").

    Raises:
        LeakageError: Naming how many evaluated items the erasers would be fitted on.
    """
    fit = {c.id.split("@")[0] for c in clips}
    evaluated = {ex.id.split("@")[0] for _, examples, _ in evaluations for ex in examples}
    both = fit & evaluated
    if both:
        raise LeakageError(
            f"{len(both)} of the {len(evaluated)} evaluated items are among the erasers' {len(fit)} fitting "
            f"utterances (e.g. {sorted(both)[:3]}): fit on other items (casceq erase --fit CAPTURE_DIR)"
        )
