"""Shared machinery of the transformers speech-LLM adapters: prompt building, batching, scoring, generation.

Every adapter builds each example's token sequence as *pieces*: plain text (tokenised without special tokens),
``Special`` tokens (looked up by name, so tokenisers that do not parse special tokens inside text still work)
and one ``AUDIO`` slot that becomes as many audio-placeholder ids as the model has audio embeddings for the clip.
Rows are left-padded by hand (never by the tokeniser's padding side) with attention masks and position ids
from the mask, so a row's logits do not depend on what else is in its batch.

Scoring (``score_options``, below) runs each prompt once with a KV cache and continues it with every option's tokens.
The unembedding runs only on the positions needed (a pre-hook on ``lm_head`` slices its input): full logits of
a 150k vocabulary over a 400-token prompt would cost gigabytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from casceq.errors import InputError
from casceq.systems.llm.prompting import AutoShots
from casceq.systems.loading import AUTO, checked_load

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16_000
"""Input waveforms are mono float32 at this rate."""


class Special(str):
    """A piece that is exactly one special token, looked up by name in the tokeniser's vocabulary."""


AUDIO = object()
"""The piece standing for a clip's run of audio-placeholder ids."""

AUDIO_SLOT = "<|audio|>"
"""Marks the input slot in a speech prompt (``casceq.systems.compose.speech_prompt``): the audio goes exactly
where the matched cascade's prompt has the transcript. A prompt without it gets the audio first."""

Piece = str | Special | object


@dataclass(frozen=True)
class Anatomy:
    """Where the parts the mechanistic analysis needs live in a loaded model.

    Attributes:
        layers: The decoder layers of the language model (an ``nn.ModuleList``), in order.
        final_norm: The norm applied after the last layer (``hidden_states[-1]`` already has it applied).
        lm_head: The unembedding (``nn.Linear``: hidden [.., D] -> logits [.., V]).
        audio_token_id: The placeholder id whose positions carry audio embeddings.
    """

    layers: Any
    final_norm: Any
    lm_head: Any
    audio_token_id: int

    def audio_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Bool mask [B, L] of the positions holding audio embeddings in ``input_ids`` [B, L]."""
        return input_ids == self.audio_token_id


@dataclass
class EncodedBatch:
    """Model inputs for one batch.

    Attributes:
        input_ids: [B, L] left-padded token ids, audio slots filled with the audio placeholder id.
        attention_mask: [B, L] 1 for real tokens, 0 for left padding.
        audio_kwargs: Audio tensors the model's forward takes (features, feature masks, sizes).
        continuation_lengths: Tokens of each row's appended continuation (0 when none), length B.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    audio_kwargs: dict[str, Any] = field(default_factory=dict)
    continuation_lengths: list[int] = field(default_factory=list)

    def position_ids(self) -> torch.Tensor:
        """[B, L] positions counted from each row's first real token (what ``generate`` uses)."""
        pos = self.attention_mask.long().cumsum(-1) - 1
        return pos.clamp(min=0)


def check_audios(audios: Sequence[np.ndarray], prompts: Sequence[str]) -> list[np.ndarray]:
    """Validate a batch: same count of audios and prompts, each audio 1-D, finite and non-empty.

    Returns:
        The audios as contiguous float32 arrays.
    """
    if len(audios) != len(prompts):
        raise InputError(f"got {len(audios)} audios but {len(prompts)} prompts")
    out = []
    for i, a in enumerate(audios):
        arr = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(f"audio {i} must be a non-empty 1-D 16 kHz waveform, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError(f"audio {i} contains NaN or infinite samples")
        out.append(arr)
    return out


def chunks(n: int, size: int) -> Iterator[range]:
    """Index ranges of consecutive batches of at most ``size`` out of ``n``."""
    for start in range(0, n, max(1, size)):
        yield range(start, min(n, start + size))


class HFSpeechLLM:
    """Base adapter for a transformers speech LLM; subclasses describe the prompt format and audio inputs.

    Subclasses add a ``from_pretrained`` constructor and implement ``audio_token_id``, ``_pieces`` (the chat
    format around one ``AUDIO`` slot), ``_audio_inputs`` (features and the number of audio embeddings per clip)
    and ``describe``. ``pass_position_ids = False`` lets a model derive its own positions (M-RoPE).
    """

    family: ClassVar[str] = ""
    pass_position_ids: ClassVar[bool] = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        feature_extractor: Any,
        *,
        backbone: str,
        batch_size: int = 8,
        few_shot: int | Mapping[str, int] = 0,
        few_shot_seed: int = 0,
        exclude_ids: Sequence[str] = (),
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.backbone = backbone
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        # The cascade's shots (same draw: ``few_shot``, seed, excluded ids), shown as earlier text turns
        self.shots_for = AutoShots(few_shot, few_shot_seed, exclude_ids)
        self._special_ids: set[int] | None = None

    # ---- hooks --------------------------------------------------------------------------------------------
    @property
    def audio_token_id(self) -> int:
        """The placeholder id the model replaces with audio embeddings."""
        raise NotImplementedError

    def _chat(self, shots: Sequence[tuple[str, str]], user: list[Piece]) -> list[Piece]:
        """The model's chat format: the text ``shots`` as earlier turns, then the ``user`` turn, assistant prefix."""
        raise NotImplementedError

    def _audio_item(self) -> list[Piece]:
        """How the model's chat template renders one audio item (placeholder plus its markers)."""
        return [AUDIO]

    def _user_pieces(self, prompt: str) -> list[Piece]:
        """The user turn: the audio item at the prompt's ``AUDIO_SLOT`` (audio first when it has none)."""
        before, slot, after = prompt.partition(AUDIO_SLOT)
        if not slot:
            return [*self._audio_item(), prompt]
        return [p for p in (before, *self._audio_item(), after) if not (isinstance(p, str) and p == "")]

    def _pieces(self, prompt: str) -> list[Piece]:
        """The chat-formatted prompt (shots, user turn with one ``AUDIO`` slot, assistant prefix)."""
        return self._chat(self.shots_for(prompt), self._user_pieces(prompt))

    def _audio_inputs(self, audios: list[np.ndarray]) -> tuple[dict[str, Any], list[int]]:
        """Model audio kwargs for the clips, and the number of audio embeddings of each clip."""
        raise NotImplementedError

    def describe(self) -> Anatomy:
        """Layers, final norm, unembedding and audio placeholder of the loaded model."""
        raise NotImplementedError

    def option_text(self, option: str) -> str:
        """The text of an option as it is scored right after the prompt (the assistant turn starts there)."""
        return option

    # ---- encoding -----------------------------------------------------------------------------------------
    def special_ids(self) -> set[int]:
        """Ids of the tokenizer's special and added tokens (those a chat template's markers must be)."""
        if self._special_ids is None:
            ids = set(getattr(self.tokenizer, "all_special_ids", None) or ())
            ids |= {int(i) for i in (getattr(self.tokenizer, "added_tokens_decoder", None) or {})}
            self._special_ids = ids
        return self._special_ids

    def _lookup_special(self, name: str) -> int | None:
        """The id the tokenizer gives the token ``name`` (overridden where names resolve elsewhere)."""
        tid = self.tokenizer.convert_tokens_to_ids(name)
        return int(tid) if isinstance(tid, int) else None

    def special_id(self, name: str) -> int:
        """The id of the special token ``name``; refused when it is unknown or resolves to a text token.

        Raises:
            InputError: No such token, or it is an ordinary vocabulary entry (the model would read text).
        """
        tid = self._lookup_special(name)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise InputError(f"{self.family}: the tokenizer has no special token {name!r}")
        if tid not in self.special_ids():
            raise InputError(
                f"{self.family}: {name!r} resolves to id {tid}, an ordinary text token, not a special token; "
                "this tokenizer does not match the model"
            )
        return tid

    def _tokens(self, piece: Piece) -> list[int]:
        if isinstance(piece, Special):
            return [self.special_id(str(piece))]
        return list(self.tokenizer.encode(str(piece), add_special_tokens=False))

    def prompt_ids(self, pieces: Sequence[Piece], n_audio: int) -> list[int]:
        """Token ids of ``pieces``; ``AUDIO`` becomes ``n_audio`` placeholder ids.

        Adjacent text pieces are tokenised together, as a tokenizer sees a rendered template (only special
        tokens split the text), so the ids equal the official processor's.
        """
        ids: list[int] = []
        text = ""
        for piece in [*pieces, None]:
            if isinstance(piece, str) and not isinstance(piece, Special):
                text += piece
                continue
            if text:
                ids += self._tokens(text)
                text = ""
            if piece is AUDIO:
                ids += [self.audio_token_id] * n_audio
            elif piece is not None:
                ids += self._tokens(piece)
        return ids

    def encode(
        self,
        audios: Sequence[np.ndarray],
        prompts: Sequence[str],
        continuations: Sequence[str] | None = None,
    ) -> EncodedBatch:
        """Tokenise a batch (chat format, audio slots expanded, optional continuation), left-padded.

        Args:
            audios: B waveforms, 1-D float32 at 16 kHz.
            prompts: B instructions (the audio is the input; the text of the item is not in the prompt).
            continuations: Optional B strings appended after the assistant prefix (options being scored).

        Returns:
            An ``EncodedBatch`` with ``input_ids``/``attention_mask`` [B, L].
        """
        import torch

        clips = check_audios(audios, prompts)
        audio_kwargs, n_audio = self._audio_inputs(clips)
        rows: list[list[int]] = []
        cont_lens: list[int] = []
        for i, prompt in enumerate(prompts):
            ids = self.prompt_ids(self._pieces(prompt), n_audio[i])
            cont: list[int] = []
            if continuations is not None:
                cont = self._tokens(continuations[i])
                if not cont:
                    raise InputError(f"option {continuations[i]!r} tokenises to nothing")
            rows.append(ids + cont)
            cont_lens.append(len(cont))
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return EncodedBatch(input_ids, mask, audio_kwargs, cont_lens)

    # ---- model calls (overridable by adapters that are not one HF model) -----------------------------------
    def _model_inputs(self, batch: EncodedBatch) -> dict[str, Any]:
        device = self.model.device
        kw: dict[str, Any] = {
            "input_ids": batch.input_ids.to(device),
            "attention_mask": batch.attention_mask.to(device),
        }
        if self.pass_position_ids:
            kw["position_ids"] = batch.position_ids().to(device)
        for k, v in batch.audio_kwargs.items():
            # Features are float32; a bfloat16 model needs them in its own dtype (masks keep theirs).
            kw[k] = v.to(device, self.model.dtype) if v.is_floating_point() else v.to(device)
        return kw

    @contextmanager
    def _last_positions(self, k: int | None) -> Iterator[None]:
        """While active, ``lm_head`` sees only the last ``k`` positions (all when None)."""
        if k is None:
            yield
            return

        def _slice(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (args[0][:, -k:], *args[1:])

        handle = self.describe().lm_head.register_forward_pre_hook(_slice)
        try:
            yield
        finally:
            handle.remove()

    def model_output(self, batch: EncodedBatch, *, use_cache: bool = False) -> Any:
        """Run the model; return its output (``.logits`` [B, L, V], ``.past_key_values``) on an encoded batch."""
        return self.model(**self._model_inputs(batch), use_cache=use_cache)

    def forward_logits(self, batch: EncodedBatch, last: int | None = None) -> torch.Tensor:
        """Logits [B, K, V] (float32) of the last ``last`` positions (all positions when None)."""
        import torch

        with torch.inference_mode(), self._last_positions(last):
            return self.model_output(batch).logits.float()

    def prompt_pass(self, batch: EncodedBatch, *, cache: bool) -> Any:
        """Forward output with logits of the last position only [B, 1, V], and the KV cache if ``cache``."""
        with self._last_positions(1):
            return self.model_output(batch, use_cache=cache)

    def continue_pass(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        """Logits [B, T, V] of ``input_ids`` [B, T] continuing from ``cache`` (mask [B, cached + T])."""
        device = self.model.device
        kw: dict[str, Any] = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        if self.pass_position_ids:
            kw["position_ids"] = position_ids.to(device)
        return self.model(**kw, past_key_values=cache, use_cache=True).logits

    def _generate_ids(self, batch: EncodedBatch, max_new_tokens: int) -> torch.Tensor:
        """Generate greedily; return the new token ids [B, T]."""
        kw = self._model_inputs(batch)
        kw.pop("position_ids", None)  # generate derives them from the mask, as we do
        out = self.model.generate(
            **kw, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_token_id
        )
        return out[:, batch.input_ids.shape[1] :]

    # ---- the SpeechLLMBackend protocol ---------------------------------------------------------------------
    def generate(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """Greedy answers [N] from audio plus instruction, in batches of ``batch_size``."""
        import torch

        answers: list[str] = []
        for idx in chunks(len(prompts), self.batch_size):
            batch = self.encode([audios[i] for i in idx], [prompts[i] for i in idx])
            with torch.inference_mode():
                new = self._generate_ids(batch, max_new_tokens)
            answers += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return answers

    def score_options(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Score options: summed log-probability [N, C] of each option's tokens after audio and instruction."""
        return score_options(self, audios, prompts, options)


def load_parts(
    path: str, model_loader: Callable[..., Any], *, dtype: str = AUTO, device: str = AUTO, **kwargs: Any
) -> tuple[Any, Any]:
    """Load a checked model (``checked_load``) and its tokenizer from ``path`` (hub id or folder)."""
    from transformers import AutoTokenizer

    model, _ = checked_load(model_loader, path, dtype=dtype, device=device, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, **{k: v for k, v in kwargs.items() if k == "revision"})
    return model, tokenizer


# --- Option scoring -----------------------------------------------------------------------------------------
# Option scoring shared by the local speech-LLM adapters: one audio+prompt pass per example, whatever C is.
#
# The prompt (audio included) is run once per example with a KV cache. The log-probability of each option's
# first token comes from the prompt's last position; when some option has more tokens, the cache is repeated C
# times (``Cache.batch_repeat_interleave``, the same call beam search uses) and the options' remaining tokens,
# right-padded, are run against it in one more pass. The audio encoder and the long prompt therefore run once,
# not C times (AG News's ``Sci/Tech`` is several tokens in most vocabularies).


def score_options(
    backend: HFSpeechLLM,
    audios: Sequence[np.ndarray],
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
) -> np.ndarray:
    """Score options: summed log-probability [N, C] of each option's tokens after audio and instruction."""
    if len(options) != len(prompts):
        raise InputError(f"got {len(options)} option lists for {len(prompts)} prompts")
    sizes = {len(o) for o in options}
    if len(sizes) != 1 or 0 in sizes:
        raise InputError("every example needs the same, non-zero number of options")
    tokens = [[backend._tokens(backend.option_text(o)) for o in opts] for opts in options]
    for opts, toks in zip(options, tokens, strict=True):
        for o, t in zip(opts, toks, strict=True):
            if not t:
                raise InputError(f"option {o!r} tokenises to nothing")
    scores = np.zeros((len(prompts), sizes.pop()))
    for idx in chunks(len(prompts), backend.batch_size):
        batch = backend.encode([audios[i] for i in idx], [prompts[i] for i in idx])
        scores[list(idx)] = _score_batch(backend, batch, [tokens[i] for i in idx])
    return scores


def _score_batch(backend: HFSpeechLLM, batch: Any, tokens: list[list[list[int]]]) -> np.ndarray:
    """Scores [B, C] for one encoded batch of prompts and the token ids of their options."""
    import torch

    n_rows, n_opt = len(tokens), len(tokens[0])
    longest = max(len(t) for row in tokens for t in row)
    with torch.inference_mode():
        out = backend.prompt_pass(batch, cache=longest > 1)
        first = out.logits[:, -1].float().log_softmax(-1)  # [B, V]: predicts each option's first token
        scores = np.array([[float(first[i, t[0]]) for t in row] for i, row in enumerate(tokens)])
        if longest == 1:
            return scores
        cache = out.past_key_values
        cache.batch_repeat_interleave(n_opt)
        width = longest - 1  # the first token is already scored; feed tokens 0..n-2 to predict 1..n-1
        ids = torch.full((n_rows * n_opt, width), backend.pad_token_id, dtype=torch.long)
        opt_mask = torch.zeros((n_rows * n_opt, width), dtype=torch.long)
        for r, toks in enumerate(t for row in tokens for t in row):
            ids[r, : len(toks) - 1] = torch.tensor(toks[:-1])
            opt_mask[r, : len(toks) - 1] = 1
        prompt_mask = batch.attention_mask.repeat_interleave(n_opt, 0)
        start = prompt_mask.sum(1, keepdim=True)  # each row's next position (left padding excluded)
        logits = backend.continue_pass(
            ids, torch.cat([prompt_mask, opt_mask], 1), start + torch.arange(width)[None], cache
        )
        logp = logits.float().log_softmax(-1)  # [B*C, width, V]
    for r, toks in enumerate(t for row in tokens for t in row):
        rest = torch.tensor(toks[1:], device=logp.device)
        if len(rest):
            scores[r // n_opt, r % n_opt] += float(logp[r, : len(rest)].gather(-1, rest[:, None]).sum())
    return scores
