"""Generated training text: the filter drops evaluation text (with a positive control), repeats and unusable
lines, and the file resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from casceq.train import gentext


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (" A warm and funny film.\nReview: more", "A warm and funny film."),
        ('  "Dull,   dull,  dull and long."', "Dull, dull, dull and long."),
        ("Too short.", None),  # 2 words
        (" ".join(["word"] * 41), None),
        ("Une critique très élogieuse du film.", None),  # not ASCII
        ("1 2 3 4 5", None),  # no letters
        (gentext.PROMPT_REVIEWS[0], None),  # a prompt review copied back
        ("\nnothing on the first line but a break", None),
    ],
)
def test_clean_line(raw: str, want: str | None) -> None:
    assert gentext.clean_line(raw) == want


def test_ngrams_ignore_case_and_punctuation() -> None:
    a = gentext.ngrams("It's a GORGEOUS, witty film about love and loss.")
    b = gentext.ngrams("it's a gorgeous witty film about love")
    assert a & b
    assert not gentext.ngrams("a gorgeous witty film") & a  # under 6 words: no run at all


class _ScriptedLM:
    """Stands in for a causal LM: ``generate`` returns the next scripted lines, one per prompt row."""

    def __init__(self, tokenizer: Any, lines: list[str]) -> None:
        self.tok, self.lines, self.calls = tokenizer, lines, 0

    def generate(self, input_ids: Any, attention_mask: Any, **_kw: Any) -> Any:
        import torch

        rows = []
        for _ in range(input_ids.shape[0]):
            rows.append(self.tok.encode(self.lines[self.calls % len(self.lines)], add_special_tokens=False))
            self.calls += 1
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        new = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], 1)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from tests import tiny_models as tm

    return AutoTokenizer.from_pretrained(tm.tiny_causal_lm(tmp_path_factory.mktemp("lm") / "lm"))


LINES = [
    " A moving, beautifully acted story about two brothers.",
    " The worst sequel of the decade, loud and empty.",
    " the performances are strong but the script lets everyone down badly.",  # the "evaluation" sentence
    " Charming, light and over far too soon.",
]
EVAL = ["Sadly, the performances are strong but the script lets everyone down badly, says our critic."]


def test_generated_text_excludes_evaluation_runs_with_a_positive_control(
    tokenizer: Any, tmp_path: Path
) -> None:
    guarded = gentext.generate_reviews(
        _ScriptedLM(tokenizer, LINES),
        tokenizer,
        3,
        tmp_path / "a",
        batch_size=4,
        exclude=EVAL,
        progress=print,
    )
    assert [ex.text for ex in guarded] == [LINES[i].strip() for i in (0, 1, 3)]
    # Asking for more than the model ever writes differently stops (repeats are dropped) instead of looping.
    more = gentext.generate_reviews(
        _ScriptedLM(tokenizer, LINES),
        tokenizer,
        5,
        tmp_path / "a2",
        batch_size=4,
        exclude=EVAL,
        progress=print,
    )
    assert [ex.text for ex in more] == [ex.text for ex in guarded]
    # Positive control: the same generations without the exclusion keep the evaluation sentence.
    free = gentext.generate_reviews(
        _ScriptedLM(tokenizer, LINES), tokenizer, 4, tmp_path / "b", batch_size=4, progress=print
    )
    assert any(gentext.ngrams(ex.text) & gentext.forbidden_ngrams(EVAL) for ex in free)


def test_generated_file_resumes_and_counts_drops(tokenizer: Any, tmp_path: Path) -> None:
    lines = [f" Review number {i} of a film that is fine." for i in range(40)]
    straight = gentext.generate_reviews(
        _ScriptedLM(tokenizer, lines), tokenizer, 10, tmp_path / "s", batch_size=4, progress=print
    )
    # Killed after one batch: the file holds it; a second call generates only the missing batches.
    first = gentext.generate_reviews(
        _ScriptedLM(tokenizer, lines), tokenizer, 3, tmp_path / "r", batch_size=4, progress=print
    )
    assert len(first) == 3
    lm = _ScriptedLM(tokenizer, lines)
    lm.calls = 4  # the generator's own state after one batch: resume continues the same stream
    resumed = gentext.generate_reviews(lm, tokenizer, 10, tmp_path / "r", batch_size=4, progress=print)
    assert [e.text for e in resumed] == [e.text for e in straight]
    assert [e.id for e in resumed] == [e.id for e in straight]
    batches = [json.loads(ln) for ln in (tmp_path / "r" / gentext.FILE).read_text().splitlines()]
    assert [b["batch"] for b in batches] == [0, 1, 2]
    assert all(b["dropped"] == 0 for b in batches)


def test_prompts_are_seeded_and_vary() -> None:
    assert gentext.prompt_of(0, 3, 5) == gentext.prompt_of(0, 3, 5)
    assert len({gentext.prompt_of(0, b, r) for b in range(3) for r in range(8)}) > 12
    assert gentext.prompt_of(0, 0, 0).endswith("Review:")
