"""Lens tokens as text and as a bag: tokenizer-level normalisation, reference bags, decoding, per-layer tallies.

Used by ``casceq.mech.lens`` (bag-of-tokens precision) and ``casceq.mech.implicit`` (lens text as transcript).
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LensLayer:
    """Lens statistics of one layer.

    Attributes:
        layer: Layer index (0 = embeddings, n_layers = last layer output).
        n_tokens: Lens tokens scored (content tokens after normalisation).
        n_hits: Scored tokens found in the reference bag.
        precision: ``n_hits / n_tokens`` (None when nothing was scored).
        identity: Text mode: fraction of positions whose lens token is the input token there (else None).
        next_token: Text mode: fraction whose lens token is the next input token (else None).
        top_tokens: The most frequent normalised lens tokens with their counts.
    """

    layer: int
    n_tokens: int
    n_hits: int
    precision: float | None
    identity: float | None = None
    next_token: float | None = None
    top_tokens: tuple[tuple[str, int], ...] = ()


class TokenNormaliser:
    """Maps token ids to their normalised strings ('' = not scored), with a cache."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
        # Added tokens flagged special (Gemma's <start_of_image>, ...) are not in all_special_ids.
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        self.special |= {int(i) for i, t in added.items() if getattr(t, "special", False)}
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        """Normalised string of one token id: lower-case, stripped; '' for special or punctuation-only."""
        token_id = int(token_id)
        if token_id not in self._cache:
            s = ""
            raw = (
                str(self.tokenizer.convert_ids_to_tokens(token_id))
                if 0 <= token_id < len(self.tokenizer)
                else ""
            )
            # "<...>" control tokens not flagged special by a converted tokenizer (Gemma's <start_of_image>).
            control = len(raw) > 2 and raw.startswith("<") and raw.endswith(">")
            if raw and token_id not in self.special and not control:
                s = normalise_text(self.tokenizer.decode([token_id]))
            self._cache[token_id] = s if any(ch.isalnum() for ch in s) else ""
        return self._cache[token_id]

    def reference_bag(self, text: str) -> frozenset[str]:
        """Return the normalised tokens and words of a reference transcript (see the module docstring)."""
        bag = {normalise_text(w) for w in text.split()}
        for variant in (text, text.lower(), " " + text, " " + text.lower()):
            bag.update(self(i) for i in self.tokenizer.encode(variant, add_special_tokens=False))
        bag.discard("")
        return frozenset(bag)


def normalise_text(s: str) -> str:
    """Lower-case, strip whitespace and edge punctuation."""
    return s.strip().lower().strip(string.punctuation + string.whitespace + "\u2019\u2018\u201c\u201d")


def lens_text(tokenizer: Any, ids: Iterable[int], *, collapse: bool = True) -> str:
    """Decode lens tokens into text: special tokens dropped, consecutive repeats collapsed (``collapse``).

    Audio positions are 20-80 ms apart, so one spoken word often spans several positions with the same lens
    token; collapsing the runs (as CTC decoding does) keeps one copy.
    """
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    kept: list[int] = []
    for t in (int(i) for i in ids):
        if t in special or t >= len(tokenizer) or (collapse and kept and kept[-1] == t):
            continue
        kept.append(t)
    return " ".join(str(tokenizer.decode(kept)).split())


class LayerTally:
    """Accumulates one layer's counts over utterances (``add``), then gives its ``LensLayer`` (``result``)."""

    def __init__(self, layer: int) -> None:
        self.layer, self.n_tokens, self.n_hits = layer, 0, 0
        self.ident, self.nxt, self.n_pos, self.n_next = 0, 0, 0, 0
        self.tops: Counter[str] = Counter()

    def add(self, ids: np.ndarray, bag: frozenset[str], norm: TokenNormaliser) -> None:
        """Score lens tokens [P] against a reference bag."""
        for t in ids:
            s = norm(int(t))
            if s:
                self.n_tokens += 1
                self.n_hits += s in bag
                self.tops[s] += 1

    def result(self, text_mode: bool) -> Any:
        """Return the layer's ``LensLayer`` (identity/next-token rates only in text mode)."""
        ratio = (lambda a, b: a / b if b else None) if text_mode else (lambda a, b: None)
        return LensLayer(
            self.layer,
            self.n_tokens,
            self.n_hits,
            self.n_hits / self.n_tokens if self.n_tokens else None,
            ratio(self.ident, self.n_pos),
            ratio(self.nxt, self.n_next),
            tuple(self.tops.most_common(10)),
        )
