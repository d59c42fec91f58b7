"""Training text written by the backbone itself: short film reviews, for the vocabulary of opinion.

AG News and MELD (the other training text) hardly use the words that carry sentiment in SST-2 ("gorgeous",
"witty", "tedious"): a CTC head trained on them alone cannot emit those tokens. The issue allows "text generated
by the LLM itself", so the frozen backbone writes reviews, prompted with a few reviews written for this module
(below; none comes from any dataset), sampled with a seeded generator.

Guarantees (tested in tests/test_train_gentext.py):

- Nothing evaluated leaks in: a generated line that shares a run of ``OVERLAP_WORDS`` words with any SST-2
  sentence (all of dev, the only split offline, so every evaluation subset) or repeats a prompt review is
  dropped, and the drop is counted.
- Resumable and deterministic: batches are drawn from ``(seed, batch index)`` and appended to
  ``generated.jsonl`` one batch at a time; a killed run continues at the next missing batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.types import Example

TASK = "generated"
"""The ``Example.task`` of generated text (clip ids ``generated/gen-<batch>-<row>``)."""
FILE = "generated.jsonl"
OVERLAP_WORDS = 6
"""A generated line sharing this many consecutive words with an SST-2 sentence is dropped."""
INSTRUCTION = "Short reviews of films, one per line."
SHOTS_PER_PROMPT = 3
MIN_WORDS, MAX_WORDS = 4, 40

# Written for this module (not taken from any dataset): varied polarity, length and register.
PROMPT_REVIEWS: tuple[str, ...] = (
    "The plot drags in the middle, but the lead actress carries every scene with real warmth.",
    "A loud, clumsy sequel that forgets everything that made the first one charming.",
    "Beautifully shot and quietly moving, this is a small gem.",
    "Two hours of my life I will never get back.",
    "The jokes land more often than not, and the cast clearly had fun making it.",
    "Pretentious, slow and oddly cold, it never earns its big emotional finale.",
    "A tense, clever thriller that keeps you guessing until the last minute.",
    "The script is lazy and the villain is a cartoon.",
    "It is sweet without being sentimental, and funny without trying too hard.",
    "A dull, joyless slog with nothing new to say.",
    "The director handles the battle scenes with confidence, though the romance feels tacked on.",
    "An ambitious mess: gorgeous to look at, impossible to care about.",
    "Sharp writing, a terrific score and a career-best performance from its star.",
    "Predictable from the first scene, and somehow still confusing.",
    "A warm, generous film about growing old with dignity.",
    "The effects are cheap and the dialogue is worse.",
    "Smart, brisk and surprisingly touching, it is the best family film of the year.",
    "Every character is a cliche and every twist is telegraphed.",
    "A haunting documentary that stays with you long after the credits.",
    "Neither scary nor funny, this horror comedy fails on both counts.",
    "The animation is lovely, the story thin but charming enough for children.",
    "Overlong and self-important, but the final act almost redeems it.",
    "A bold, strange and thoroughly entertaining ride.",
    "Flat performances sink a promising premise.",
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def ngrams(text: str, n: int = OVERLAP_WORDS) -> set[tuple[str, ...]]:
    """The set of ``n``-word runs of ``text`` (lower-cased words)."""
    w = _words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def forbidden_ngrams(texts: Iterable[str], n: int = OVERLAP_WORDS) -> set[tuple[str, ...]]:
    """Every ``n``-word run of ``texts`` (the evaluation sentences a generated line must not repeat)."""
    out: set[tuple[str, ...]] = set()
    for t in texts:
        out |= ngrams(t, n)
    return out


def clean_line(raw: str) -> str | None:
    """The first line of a generation, tidied; None when it is not a usable review.

    Usable: ``MIN_WORDS``-``MAX_WORDS`` words, printable ASCII, not a prompt review.
    """
    line = raw.split("\n", 1)[0].strip().strip('"').strip()
    line = re.sub(r"\s+", " ", line)
    n = len(line.split())
    if not MIN_WORDS <= n <= MAX_WORDS or not line.isascii() or not line.isprintable():
        return None
    if line in PROMPT_REVIEWS or not re.search(r"[A-Za-z]", line):
        return None
    return line


def prompt_of(seed: int, batch: int, row: int) -> str:
    """The prompt of one row: the instruction and ``SHOTS_PER_PROMPT`` prompt reviews drawn by (seed, batch, row)."""
    rng = np.random.default_rng([seed, 11, batch, row])
    shots = [PROMPT_REVIEWS[i] for i in rng.choice(len(PROMPT_REVIEWS), SHOTS_PER_PROMPT, replace=False)]
    return INSTRUCTION + "\n" + "".join(f"Review: {s}\n" for s in shots) + "Review:"


def generate_reviews(
    lm: Any,
    tokenizer: Any,
    n: int,
    out: Path,
    *,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    exclude: Sequence[str] = (),
    bf16: bool = False,
    progress: Callable[[str], None] = print,
) -> list[Example]:
    """Generate until ``n`` usable reviews are stored in ``out/generated.jsonl``; return them as Examples.

    Stops early (with fewer) after ``3 * ceil(n / batch_size) + 5`` batches, the sign of a model repeating itself.
    Each line of the file is one batch: ``{"batch": b, "kept": [...], "dropped": k}``. ``exclude`` are the
    sentences no review may share an ``OVERLAP_WORDS``-word run with.
    """
    import contextlib

    import torch

    out.mkdir(parents=True, exist_ok=True)
    path = out / FILE
    banned = forbidden_ngrams(exclude)
    batches = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    seen = {t for b in batches for t in b["kept"]}
    kept = sum(len(b["kept"]) for b in batches)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    # A model that keeps repeating itself (or the evaluation text) must not loop forever.
    max_batches = 3 * -(-n // batch_size) + 5
    try:
        while kept < n:
            b = len(batches)
            if b >= max_batches:
                progress(f"generated reviews: stopped at {kept}/{n} after {b} batches (too few usable lines)")
                break
            prompts = [prompt_of(seed, b, r) for r in range(batch_size)]
            enc = tokenizer(prompts, return_tensors="pt", padding=True)
            torch.manual_seed(int(np.random.default_rng([seed, 13, b]).integers(2**31)))
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                new = lm.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    top_p=0.95,
                    temperature=1.0,
                    pad_token_id=tokenizer.pad_token_id,
                )[:, enc["input_ids"].shape[1] :]
            good, dropped = [], 0
            for raw in tokenizer.batch_decode(new, skip_special_tokens=True):
                line = clean_line(raw)
                if line is None or line in seen or ngrams(line) & banned:
                    dropped += 1
                    continue
                seen.add(line)
                good.append(line)
            record = {"batch": b, "kept": good, "dropped": dropped}
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            batches.append(record)
            kept += len(good)
            progress(f"generated reviews: {min(kept, n)}/{n} ({dropped} dropped in batch {b})")
    finally:
        tokenizer.padding_side = side
    return read_reviews(out, n)


def read_reviews(out: Path, n: int) -> list[Example]:
    """The first ``n`` stored reviews as Examples (task ``"generated"``, label ``""``)."""
    path = out / FILE
    if not path.exists():
        return []
    rows: list[Example] = []
    for ln in path.read_text().splitlines():
        if not ln.strip():
            continue
        rec = json.loads(ln)
        for r, text in enumerate(rec["kept"]):
            rows.append(Example(id=f"gen-{rec['batch']:05d}-{r:02d}", task=TASK, text=text, label=""))
    return rows[:n]
