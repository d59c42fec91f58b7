import csv
import functools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casceq.audio.textnorm import (
    decode_entities,
    edit_distance,
    normalize_for_wer,
    spoken_text,
    word_error_rate,
)
from casceq.paths import datasets_dir

# (task, raw text as it is in the official file, what the voice should read)
CASES = [
    # SST-2 (GLUE dev.tsv, PTB tokens, lower case)
    (
        "sst2",
        "it 's a charming and often affecting journey . ",
        "it's a charming and often affecting journey.",
    ),
    (
        "sst2",
        "i ca n't think of a single good reason , even though",
        "i can't think of a single good reason, even though",
    ),
    ("sst2", "it wo n't be , will it ?", "it won't be, will it?"),
    (
        "sst2",
        "we 're here and they 've gone ; i 'll stay , you 'd go , i 'm done",
        "we're here and they've gone; i'll stay, you'd go, i'm done",
    ),
    (
        "sst2",
        "the draw ( for `` big bad love '' ) is a solid performance .",
        'the draw (for "big bad love") is a solid performance.',
    ),
    (
        "sst2",
        "if steven soderbergh 's ` solaris ' is a failure",
        'if steven soderbergh\'s "solaris" is a failure',
    ),
    ("sst2", "the actors ' lines -lrb- sort of -rrb- work", "the actors' lines (sort of) work"),
    ("sst2", "a 1\\/2 hour -lsb- sic -rsb- of 9 \\* stars", "a 1/2 hour [sic] of 9 * stars"),
    (
        "sst2",
        "... a mix of smiles and tears , `` crossroads '' instead",
        'a mix of smiles and tears, "crossroads" instead',
    ),
    # AG News (test.csv): entities with and without '&', cp1252 code points, backslashes, ticker tags
    ("ag_news", "Corp. for just over  #36;1 billion", "Corp. for just over $1 billion"),
    (
        "ag_news",
        "Wall Street #39;s dwindling\\band of ultra-cynics",
        "Wall Street's dwindling band of ultra-cynics",
    ),
    ("ag_news", "Corp. for just over \\$1 billion", "Corp. for just over $1 billion"),
    (
        "ag_news",
        "Texas Instruments Inc. &lt;TXN.N&gt;, STMicroelectronics",
        "Texas Instruments Inc., STMicroelectronics",
    ),
    ("ag_news", "In  quot;helping themselves, quot; Ricky Bryant", 'In "helping themselves," Ricky Bryant'),
    ("ag_news", "their convention  #151; California Gov.", "their convention — California Gov."),
    ("ag_news", "Newsday #146;s Stephen", "Newsday's Stephen"),
    ("ag_news", "AT amp;T and Procter &amp; Gamble", "AT&T and Procter & Gamble"),
    ("ag_news", "a &lt;b&gt;bold&lt;/b&gt; claim", "a bold claim"),
    ("ag_news", "it is a forecast; not a fact", "it is a forecast; not a fact"),
    # both
    (None, "  many   spaces\there  ", "many spaces here"),
    (None, "  ...  ", ""),
    ("sst2", "... is an arthritic attempt at directing .", "is an arthritic attempt at directing."),
    ("sst2", "-- and yet ... it works", "and yet... it works"),
    (None, "&lt;&gt;", ""),
]


@pytest.mark.parametrize(("task", "raw", "spoken"), CASES)
def test_spoken_text_table(task, raw, spoken):
    assert spoken_text(raw, task) == spoken


def test_ptb_rules_only_for_ptb_tasks():
    # AG News text with a literal backtick quote is not PTB: left alone (only spacing is tidied)
    assert spoken_text("say `` hi '' now", "ag_news") == "say `` hi'' now"
    assert spoken_text("say `` hi '' now", "sst2") == 'say "hi" now'


def test_decode_entities_matches_html_for_standard_entities():
    import html

    for s in ["&lt;", "&amp;", "&#39;", "&#x27;", "&quot;x&quot;", "caf&eacute;"]:
        assert decode_entities(s) == html.unescape(s)


@functools.cache
def _sst2_rows():
    root = datasets_dir()
    if root is None or not (root / "sst2" / "dev.tsv").exists():
        pytest.skip("shared SST-2 dev.tsv not found")
    with open(root / "sst2" / "dev.tsv", encoding="utf-8", newline="") as f:
        return [r[0] for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]


def test_no_ptb_artefacts_left_in_sst2_dev():
    bad = re.compile(r"-[lr][rsc]b-|``|''| n't| '(s|re|ve|ll|d|m)\b| [,.;:!?]")
    rows = _sst2_rows()
    spoken = [spoken_text(t, "sst2") for t in rows]
    assert all(spoken), "no SST-2 sentence should normalise to nothing"
    left = [s for s in spoken if bad.search(s)]
    assert not left, left[:5]
    # positive control: the raw file is full of them
    assert sum(bool(bad.search(t)) for t in rows) > 700


def test_no_entities_or_backslashes_left_in_ag_news():
    root = datasets_dir()
    if root is None or not (root / "ag_news" / "test.csv").exists():
        pytest.skip("shared AG News test.csv not found")
    with open(root / "ag_news" / "test.csv", encoding="utf-8", newline="") as f:
        rows = [f"{r[1]}. {r[2]}" for r in csv.reader(f)]
    bad = re.compile(r"#\d+;|\b(quot|amp|lt|gt);|\\|<|>")
    assert sum(bool(bad.search(t)) for t in rows) > 1000  # positive control
    left = [s for s in (spoken_text(t, "ag_news") for t in rows) if bad.search(s)]
    assert not left, left[:5]


# --- WER -----------------------------------------------------------------------------------------------------


def test_wer_known_values():
    # "sat"->"sit" substitution, "the" deleted: 2 edits over 6 reference words
    assert word_error_rate(["The cat sat on the mat."], ["the cat sit on mat"]) == pytest.approx(2 / 6)
    assert word_error_rate(["a b c"], ["a b c d e"]) == pytest.approx(2 / 3)  # insertions count
    assert word_error_rate(["It's fine!"], ["it's fine"]) == 0.0
    # corpus WER pools edits over all reference words (not a mean of per-sentence rates)
    assert word_error_rate(["a", "b c d e"], ["x", "b c d e"]) == pytest.approx(1 / 5)
    assert word_error_rate(["one two"], [""]) == 1.0


def test_wer_rejects_bad_input():
    with pytest.raises(ValueError, match="references"):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["..."], ["x"])


def test_normalize_for_wer():
    assert normalize_for_wer("Well-made, isn’t it? “Yes”.") == ["well", "made", "is", "not", "it", "yes"]
    assert normalize_for_wer("The colour, twenty-five...") == ["the", "color", "25"]


def _reference_distance(a, b):
    @functools.cache
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


words = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=7)


@given(words, words)
def test_edit_distance_matches_recursive_definition(a, b):
    assert edit_distance(a, b) == _reference_distance(tuple(a), tuple(b))
    assert edit_distance(a, b) == edit_distance(b, a)
    assert edit_distance(a, a) == 0
