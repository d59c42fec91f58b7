"""Logit lens: each captured layer projected through final norm + unembedding (+ soft-capping), greedy tokens.

Raw residual states (``casceq.mech.capture.LayerTap``; never transformers' ``hidden_states[-1]``, which already
has the final norm) go through ``ModelLayout.unembed``; the argmax token of each position is the lens token.
Two sources:

- a capture folder of a speech LLM (``lens_capture``): lens tokens at the audio positions of every utterance,
  scored against the utterance's transcript (the paper's Table 5 / Figure 5);
- text into a text LLM (``lens_texts``): lens tokens at the positions of the input text, scored against the
  text itself, plus how often the lens token *is* the input token at that position (``identity``) or the next
  input token (``next_token``): where input words are still readable and where prediction takes over.
- a speech LLM run on its **full prompt** (``lens_positions``, the paper's Qwen2-Audio analysis): chat and
  instruction tokens before the audio, the audio positions, and the prompt tokens after them (instruction,
  end of turn, assistant prefix), each scored against the utterance's transcript and reported per **region**
  (``audio``, ``text-before``, ``text-after``, ``text`` = both text regions; ``audio-padding`` when a model has
  placeholder positions beyond the clip's own, which are not scored). ``layers`` is then all positions together.
  Computed from the loaded model (captures hold audio positions only); written to ``mech/lens_all.json``.

**Bag-of-tokens precision** of a layer = hits / scored tokens over all positions of all utterances. A lens token
is normalised with the model's tokenizer: ``decode([id])``, lower-cased, stripped of whitespace and edge
punctuation; special and ``<...>`` control tokens and tokens with no letter or digit are dropped (not scored). It is a hit when it is
in the reference bag: the normalised tokens of the transcript tokenised as is, lower-cased, and each with a
leading space (so ``"Movie"``, ``" movie"`` and ``"movie"`` all count), plus the transcript's normalised words.

``mech/lens.json`` (``LensResult.to_json``)::

    {"kind": "lens", "version": 1, "model": str, "key": str, "fingerprint": str, "source": "capture"|"text",
     "n_utterances": int, "n_positions": int,
     "layers": [{"layer": int, "n_tokens": int, "n_hits": int, "precision": float|null,
                 "identity": float|null, "next_token": float|null, "top_tokens": [[str, int], ...]}, ...],
     "examples": [{"id": str, "reference": str, "layer": int, "text": str}, ...], "extra": {...},
     "regions": [{"region": str, "n_positions": int, "layers": [as "layers"]}, ...]}   # all-positions only

``source`` is ``"all-positions"`` for ``lens_positions`` (``regions`` empty otherwise; older files have none).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.mech.adapters import layout_of
from casceq.mech.capture import SAMPLE_RATE, LayerTap, fingerprint
from casceq.mech.lens_tokens import LayerTally, LensLayer, TokenNormaliser, lens_text, normalise_text
from casceq.mech.shards import CaptureReader

__all__ = [
    "LayerTally",
    "LensExample",
    "LensLayer",
    "LensResult",
    "RegionLens",
    "TokenNormaliser",
    "lens_capture",
    "lens_positions",
    "lens_text",
    "lens_texts",
    "lens_token_ids",
    "normalise_text",
]

LENS_FILE = "mech/lens.json"
"""Where ``casceq lens`` writes its result inside the output folder."""

LENS_ALL_FILE = "mech/lens_all.json"
"""Where ``casceq lens --all-positions`` writes its result (beside an audio-position ``lens.json``)."""

REGIONS = ("audio", "text-before", "text-after", "text")
"""Regions of the full prompt scored by ``lens_positions`` (``text`` = ``text-before`` + ``text-after``)."""

CHUNK_POSITIONS = 64
"""Positions unembedded at once (Gemma's 262k vocabulary: 64 x 262k float32 logits = 67 MB)."""

N_EXAMPLES = 5
"""Utterances whose lens text is kept in the result (per layer), for people to read."""


@dataclass(frozen=True)
class LensExample:
    """The lens text of one utterance at one layer (greedy tokens, repeats collapsed)."""

    id: str
    reference: str
    layer: int
    text: str


@dataclass(frozen=True)
class RegionLens:
    """The lens over one region of the full prompt (``lens_positions``).

    Attributes:
        region: One of ``REGIONS`` (or ``audio-padding``, not scored).
        n_positions: Positions of the region over all utterances (scored or not: special tokens are not).
        layers: Per layer, the tokens scored in this region and their precision.
    """

    region: str
    n_positions: int
    layers: tuple[LensLayer, ...]


@dataclass(frozen=True)
class LensResult:
    """A logit lens over layers (see the module docstring for the JSON schema)."""

    model: str
    key: str
    fingerprint: str
    source: str
    n_utterances: int
    n_positions: int
    layers: tuple[LensLayer, ...]
    examples: tuple[LensExample, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    regions: tuple[RegionLens, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (schema in the module docstring)."""
        return {"kind": "lens", "version": 1, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LensResult:
        """Inverse of :meth:`to_json` (``kind`` and ``version`` are dropped)."""
        fields = {k: v for k, v in data.items() if k not in ("kind", "version")}
        fields["layers"] = tuple(layer_from_json(r) for r in data.get("layers", ()))
        fields["examples"] = tuple(LensExample(**e) for e in data.get("examples", ()))
        fields["regions"] = tuple(
            RegionLens(r["region"], int(r["n_positions"]), tuple(layer_from_json(x) for x in r["layers"]))
            for r in data.get("regions", ())
        )
        return cls(**fields)

    def region(self, name: str) -> RegionLens:
        """The :class:`RegionLens` called ``name`` (``InputError`` when absent)."""
        for r in self.regions:
            if r.region == name:
                return r
        raise InputError(f"no lens region {name!r} (have {[r.region for r in self.regions]})")

    def markdown(self) -> str:
        """Table 5 style: precision (and text-mode identity/next-token rates) per layer."""
        text = self.source == "text"
        head = "| layer | tokens scored | precision |" + (" identity | next token |" if text else "")
        lines = [head + " top lens tokens |", "|" + "---|" * (head.count("|"))]
        for r in self.layers:
            row = f"| {r.layer} | {r.n_tokens} | {_fmt(r.precision)} |"
            if text:
                row += f" {_fmt(r.identity)} | {_fmt(r.next_token)} |"
            tops = ", ".join(f"`{t}` {c}" for t, c in r.top_tokens[:6])
            lines.append(row + f" {tops} |")
        if self.regions:
            names = [r.region for r in self.regions if r.region != "audio-padding"]
            counts = ", ".join(f"{r.region} {r.n_positions}" for r in self.regions)
            lines += [
                "",
                f"Lens precision per region of the full prompt (positions: {counts}); scored tokens in brackets.",
                "",
                "| layer | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            by = {r.region: {x.layer: x for x in r.layers} for r in self.regions}
            for r in self.layers:
                cells = [f"{_fmt(by[n][r.layer].precision)} ({by[n][r.layer].n_tokens})" for n in names]
                lines.append(f"| {r.layer} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path, file: str = LENS_FILE) -> Path:
        """Write ``file`` (default ``mech/lens.json``) and its ``.md`` under ``out``; returns the JSON path."""
        path = Path(out) / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")
        path.with_suffix(".md").write_text(self.markdown())
        return path


def layer_from_json(data: dict[str, Any]) -> LensLayer:
    """A :class:`LensLayer` from its JSON dict (``top_tokens`` pairs as tuples)."""
    return LensLayer(**{**data, "top_tokens": tuple((str(t), int(c)) for t, c in data.get("top_tokens", ()))})


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def lens_token_ids(layout: Any, states: Any) -> np.ndarray:
    """Greedy lens tokens, int64 [P], of raw residual states [P, D] (numpy or torch, any float dtype).

    Runs ``layout.unembed`` (final norm, unembedding, soft-capping) in chunks of ``CHUNK_POSITIONS``.
    """
    import torch

    x = states if isinstance(states, torch.Tensor) else torch.from_numpy(np.array(states, dtype=np.float32))
    if x.ndim != 2 or x.shape[-1] != layout.width:
        raise InputError(f"lens needs states [P, {layout.width}], got {tuple(x.shape)}")
    out = []
    dtype = layout.lm_head.weight.dtype if layout.lm_head is not None else torch.float32
    with torch.inference_mode():
        for start in range(0, x.shape[0], CHUNK_POSITIONS):
            chunk = x[start : start + CHUNK_POSITIONS].to(layout.lm_head.weight.device, dtype)
            out.append(layout.unembed(chunk).argmax(-1).cpu())
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def lens_capture(
    obj: Any, tokenizer: Any, folder: str | Path, layers: Sequence[int] | None = None
) -> LensResult:
    """Logit lens over a capture folder's layers, at the audio positions of every utterance.

    Args:
        obj: The model the capture came from (a casceq speech-LLM backend); its weights' fingerprint must
            match the capture's.
        tokenizer: Its tokenizer (``obj.tokenizer``).
        folder: A capture folder (``casceq.mech.shards``).
        layers: Captured layers to lens (default: all captured).

    Raises:
        InputError: Another model's capture, a layer not captured, an encoder-only model, NaN states.
    """
    reader = CaptureReader(folder)
    layout = layout_of(obj)
    if layout.lm_head is None:
        raise InputError(f"{layout.key} is an encoder: no unembedding to lens through", path=str(folder))
    if fingerprint(obj, layout) != reader.meta.fingerprint:
        raise InputError(
            f"captured from other weights than {reader.meta.model!r} loaded now", path=str(folder)
        )
    chosen = layout.check_layers(layers if layers is not None else reader.meta.layers)
    norm = TokenNormaliser(tokenizer)
    bags: dict[str, frozenset[str]] = {}
    shown = {r.id for r in reader.utterances[:N_EXAMPLES]}
    tallies, examples = [], []
    for layer in chosen:
        reader.meta.layer_slot(layer)
        tally = LayerTally(layer)
        for block in reader.iter_layer(layer):
            for rec in block.records:
                states = block.states[block.rows(rec)]
                if not np.isfinite(states).all():
                    raise InputError(
                        f"utterance {rec.id!r}: NaN or infinite states at layer {layer}", path=str(folder)
                    )
                ids = lens_token_ids(layout, states)
                bag = bags.setdefault(rec.id, norm.reference_bag(rec.transcript))
                tally.add(ids, bag, norm)
                if rec.id in shown:
                    examples.append(LensExample(rec.id, rec.transcript, layer, lens_text(tokenizer, ids)))
        tallies.append(tally.result(text_mode=False))
    n_pos = sum(r.count for r in reader.utterances)
    return LensResult(
        reader.meta.model,
        layout.key,
        reader.meta.fingerprint,
        "capture",
        len(reader.utterances),
        n_pos,
        tuple(tallies),
        tuple(examples),
    )


def lens_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    name: str = "",
    progress: Callable[[int], None] | None = None,
) -> LensResult:
    """Logit lens of a text causal LM over the positions of each input text (see the module docstring).

    Each text is tokenised with the tokenizer's special tokens (Gemma's ``<bos>``), run once with every chosen
    layer tapped; positions holding special tokens are not scored.

    Args:
        model: A transformers causal LM (``casceq.mech.adapters.RULES`` must know its class).
        tokenizer: Its tokenizer.
        texts: Input texts (the reference of each is the text itself).
        layers: Layer indices (default: all, ``0..n_layers``).
        name: Model spec recorded in the result.
        progress: Called with the index of each text done.
    """
    import torch

    layout = layout_of(model)
    chosen = layout.check_layers(layers if layers is not None else range(layout.n_layers + 1))
    if not texts:
        raise InputError("lens needs at least one text")
    norm = TokenNormaliser(tokenizer)
    tallies = {layer: LayerTally(layer) for layer in chosen}
    examples: list[LensExample] = []
    n_pos = 0
    for k, text in enumerate(texts):
        ids = list(tokenizer(text)["input_ids"])
        content = np.array([i not in norm.special for i in ids])
        with LayerTap(layout, chosen) as tap, torch.inference_mode():
            model(input_ids=torch.tensor([ids], device=model.device))
        bag = norm.reference_bag(text)
        arr = np.array(ids)
        n_pos += int(content.sum())
        for layer in chosen:
            states = tap.states[layer][0]
            if not torch.isfinite(states).all():
                raise InputError(f"text {k}: NaN or infinite states at layer {layer}")
            lens = lens_token_ids(layout, states)
            t = tallies[layer]
            t.add(lens[content], bag, norm)
            t.ident += int((lens[content] == arr[content]).sum())
            t.n_pos += int(content.sum())
            nxt = content[:-1] & content[1:]
            t.nxt += int((lens[:-1][nxt] == arr[1:][nxt]).sum())
            t.n_next += int(nxt.sum())
            if k < N_EXAMPLES:
                examples.append(LensExample(f"text-{k}", text, layer, lens_text(tokenizer, lens[content])))
        if progress is not None:
            progress(k)
    return LensResult(
        name,
        layout.key,
        fingerprint(model, layout),
        "text",
        len(texts),
        n_pos,
        tuple(tallies[layer].result(text_mode=True) for layer in chosen),
        tuple(examples),
    )


def lens_positions(
    backend: Any,
    tokenizer: Any,
    clips: Sequence[tuple[str, np.ndarray, str]],
    *,
    layers: Sequence[int] | None = None,
    prompt: str = "Transcribe the audio.",
    name: str = "",
    progress: Callable[[int], None] | None = None,
) -> LensResult:
    """Logit lens of a speech LLM over every position of its full prompt, per region (module docstring).

    Each clip is encoded as the backend encodes it for answering (``backend.encode([audio], [prompt])``: chat
    template, audio placeholders, instruction, assistant prefix) and run once with every chosen layer tapped.
    Audio positions are the placeholder positions (``backend.audio_token_id``), of which the first
    ``layout.n_positions(audio)`` are the clip's own (as ``casceq capture`` keeps); the rest are
    ``audio-padding``. Text positions before the first audio position are ``text-before``, after the last
    ``text-after``. Every position is scored against the clip's transcript (special tokens are not scored).

    Args:
        backend: A casceq speech-LLM backend (``casceq.mech.adapters.RULES`` knows its family).
        tokenizer: Its tokenizer.
        clips: ``(id, 16 kHz waveform, transcript)`` per utterance (truncated to the model's window here).
        layers: Layer indices (default: the paper's fractions of depth).
        prompt: The instruction (a capture's ``prompt``).
        name: Model spec recorded in the result.
        progress: Called with the index of each clip done.

    Raises:
        InputError: An encoder-only model, no clips, a prompt without audio positions, NaN states.
    """
    import torch

    layout = layout_of(backend)
    if layout.lm_head is None or layout.seconds_per_position is None:
        raise InputError(f"{layout.key}: the all-position lens needs a speech LLM")
    if not clips:
        raise InputError("the all-position lens needs at least one utterance")
    chosen = layout.check_layers(layers if layers is not None else layout.default_layers())
    limit = int(layout.window_s * SAMPLE_RATE) if layout.window_s else None
    norm = TokenNormaliser(tokenizer)
    names = (*REGIONS, "audio-padding")
    tallies = {(r, layer): LayerTally(layer) for r in names for layer in chosen}
    overall = {layer: LayerTally(layer) for layer in chosen}
    counts = dict.fromkeys(names, 0)
    examples: list[LensExample] = []
    for k, (uid, audio, transcript) in enumerate(clips):
        wav = np.asarray(audio, dtype=np.float32)[:limit]
        batch = backend.encode([wav], [prompt])
        with LayerTap(layout, chosen) as tap, torch.inference_mode():
            backend.forward_logits(batch, last=1)  # the unembedding runs on the last position only
        masks = region_masks(batch, backend.audio_token_id, layout.n_positions(wav), uid)
        for r in names:
            counts[r] += int(masks[r].sum())
        bag = norm.reference_bag(transcript)
        real = masks["audio"] | masks["text"]
        for layer in chosen:
            states = tap.states[layer][0]
            if not torch.isfinite(states).all():
                raise InputError(f"utterance {uid!r}: NaN or infinite states at layer {layer}")
            ids = lens_token_ids(layout, states)
            for r in names:
                if r != "audio-padding":
                    tallies[(r, layer)].add(ids[masks[r]], bag, norm)
            overall[layer].add(ids[real], bag, norm)
            if k < N_EXAMPLES:
                examples.append(LensExample(uid, transcript, layer, lens_text(tokenizer, ids[real])))
        if progress is not None:
            progress(k)
    kept = [r for r in names if r != "audio-padding" or counts[r]]
    regions = tuple(
        RegionLens(r, counts[r], tuple(tallies[(r, layer)].result(text_mode=False) for layer in chosen))
        for r in kept
    )
    return LensResult(
        name,
        layout.key,
        fingerprint(backend, layout),
        "all-positions",
        len(clips),
        counts["audio"] + counts["text"],
        tuple(overall[layer].result(text_mode=False) for layer in chosen),
        tuple(examples),
        regions=regions,
    )


def region_masks(batch: Any, audio_token_id: int, n_audio: int, uid: str = "") -> dict[str, np.ndarray]:
    """Boolean masks [L] of one encoded row, by region of the prompt (left padding is in none).

    ``audio``: the clip's first ``n_audio`` placeholders; ``audio-padding``: further placeholders;
    ``text-before`` / ``text-after``: text positions before the first / after the last placeholder (text between
    placeholders counts as after); ``text``: both.

    Raises:
        InputError: A row without audio positions.
    """
    ids = batch.input_ids[0].cpu().numpy()
    real = batch.attention_mask[0].cpu().numpy().astype(bool)
    placeholder = (ids == audio_token_id) & real
    where = np.flatnonzero(placeholder)
    if not where.size:
        raise InputError(f"utterance {uid!r}: the encoded prompt has no audio positions")
    audio = placeholder & (np.cumsum(placeholder) <= n_audio)
    pos = np.arange(len(ids))
    before = real & ~placeholder & (pos < where[0])
    after = real & ~placeholder & (pos > where[-1])
    between = real & ~placeholder & ~before & ~after  # text between audio spans (several clips): text-after
    return {
        "audio": audio,
        "audio-padding": placeholder & ~audio,
        "text-before": before,
        "text-after": after | between,
        "text": before | after | between,
    }
