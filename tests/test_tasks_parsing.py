"""Answer parsing: tables of realistic messy model outputs per task, rules as properties, TriviaQA scoring."""

from __future__ import annotations

import re
import string
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casceq.tasks import TASK_NAMES, get_task
from casceq.tasks.parsing import alias_match, normalize_answer
from casceq.types import INVALID, Example

X = INVALID

SST2_CASES = [
    ("positive", "positive"),
    ("Positive", "positive"),
    ("NEGATIVE", "negative"),
    ("Positive.", "positive"),
    ("**Negative**", "negative"),
    ("`positive`", "positive"),
    ('"positive"', "positive"),
    ("'negative'", "negative"),
    ("“Positive”", "positive"),
    ("- Positive", "positive"),
    ("* negative", "negative"),
    ("> positive", "positive"),
    ("## Negative", "negative"),
    ("1. positive", "positive"),
    ("Sentiment: Positive", "positive"),
    ("**Sentiment:** negative", "negative"),
    ("Answer: negative", "negative"),
    ("The answer is positive.", "positive"),
    ("Label - positive", "positive"),
    ("The sentiment of the text is positive.", "positive"),
    ("Positive 😊", "positive"),
    ("positive (积极)", "positive"),
    ("pos", "positive"),
    ("Neg.", "negative"),
    ("  \n\n negative \n", "negative"),
    ("<|im_start|>assistant\nnegative<|im_end|>", "negative"),
    ("negative</s>", "negative"),
    ("<think>The reviewer complains, so negative? no wait...</think>Positive", "positive"),
    ("Negative. Although the acting is positive, the overall tone is negative.", "negative"),
    ("Positive. The review mentions a negative aspect but praises the film.", "positive"),
    ("positive, not negative", "positive"),
    ("The sentiment is not positive, it is negative.", "negative"),
    ("It isn't negative; it's positive.", "positive"),
    ("I'm not sure, but I think positive.", "positive"),
    ("Let me think. The reviewer has some negative points.\n\nFinal answer: positive", "positive"),
    ("Text: a gorgeous, witty film\nAnswer: positive", "positive"),
    (
        "Classify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\n"
        "negative",
        "negative",
    ),
    # hedges, negations, refusals, junk: INVALID
    ("", X),
    ("   ", X),
    ("\n\n", X),
    ("positive or negative", X),
    ("Positive/Negative", X),
    ("Either positive or negative.", X),
    ("It could be positive or negative.", X),
    ("positive and negative", X),
    ("Positive, negative", X),
    ("positive\nnegative", X),
    ("Neither positive nor negative.", X),
    ("Not positive.", X),
    ("not negative", X),
    ("I'm not sure whether it's positive.", X),
    ("It's hard to say if it is negative.", X),
    ("Neutral", X),
    ("mixed", X),
    ("Positivo", X),
    ("négatif", X),
    ("积极", X),
    ("Положительный", X),
    ("positively", X),
    ("I'm sorry, but I can't help with that.", X),
    ("As an AI language model, I cannot determine sentiment.", X),
    ("The text expresses an opinion.", X),
    ("1", X),
    ("?", X),
    ("<|im_end|>", X),
    # typical small-instruct-model phrasings
    ("The sentiment of the text is **positive**.", "positive"),
    ("I would classify the sentiment as negative.", "negative"),
    ("Based on the text, the sentiment is negative.", "negative"),
    ("This text has a positive sentiment.", "positive"),
    ("Answer: Positive\n\nExplanation: the reviewer enjoyed it, nothing negative.", "positive"),
    ("Positive\nPositive\nPositive", "positive"),
    ("Sure! Negative.", "negative"),
    ("<start_of_turn>model\nPositive<end_of_turn>", "positive"),
    ("<|start_header_id|>assistant<|end_header_id|>\n\nnegative<|eot_id|>", "negative"),
    ("The answer is: *negative*", "negative"),
    ("Answer:positive", "positive"),
    ("POSITIVE!!!", "positive"),
    ("positive or negative?", X),
    ("Answer: positive or negative", X),
    ("Sentiment: neutral", X),
    ("Answer with exactly one word: positive or negative.\nnegative", "negative"),
    ("answer with exactly one word: positive or negative. Positive", "positive"),
    ("I cannot determine whether this is positive or negative.", X),
]

AG_NEWS_CASES = [
    ("World", "World"),
    ("world", "World"),
    ("Sports", "Sports"),
    ("sport", "Sports"),
    ("Business", "Business"),
    ("Sci/Tech", "Sci/Tech"),
    ("sci/tech", "Sci/Tech"),
    ("Sci-Tech", "Sci/Tech"),
    ("sci tech", "Sci/Tech"),
    ("SciTech", "Sci/Tech"),
    ("Science", "Sci/Tech"),
    ("Technology", "Sci/Tech"),
    ("Science and Technology", "Sci/Tech"),
    ("Science/Technology", "Sci/Tech"),
    ("Tech", "Sci/Tech"),
    ("World News", "World"),
    ("Label - World", "World"),
    ("Category: **Business**", "Business"),
    ("Topic: Sports", "Sports"),
    ("The article is about sports.", "Sports"),
    ("**Sci/Tech** - the article discusses a new chip.", "Sci/Tech"),
    ("Business. It covers the world economy.", "Business"),
    ("The topic is Business, not World.", "Business"),
    ("1. Sports", "Sports"),
    ("Sports or Business", X),
    ("World/Business", X),
    ("Either Sports or World", X),
    ("politics", X),
    ("Economy", X),
    ("Entertainment", X),
    ("Not sports", X),
    ("", X),
    ("I cannot classify this article.", X),
    ("Deportes", X),
    ("This article belongs to the Sci/Tech category.", "Sci/Tech"),
    ("Topic: World\n\nThe article discusses the election in Iraq.", "World"),
    ("**Category:** Sports", "Sports"),
    ("Business news", "Business"),
    ("The topic of the article is Sports.", "Sports"),
    ("World (international news)", "World"),
    ("Sci / Tech", "Sci/Tech"),
    ("SCI/TECH", "Sci/Tech"),
    ("Answer: 4. Sci/Tech", "Sci/Tech"),
    ("Sci/Tech or Business", X),
    ("World, Sports, Business, Sci/Tech", X),
    ("Finance", X),
    ("Sci-fi", X),
    ("Health", X),
]

MELD_CASES = [
    ("joy", "joy"),
    ("Joy", "joy"),
    ("happy", "joy"),
    ("Happiness", "joy"),
    ("joyful", "joy"),
    ("angry", "anger"),
    ("Anger.", "anger"),
    ("sad", "sadness"),
    ("Sadness", "sadness"),
    ("surprise!", "surprise"),
    ("Surprised", "surprise"),
    ("fear", "fear"),
    ("scared", "fear"),
    ("afraid", "fear"),
    ("disgusted", "disgust"),
    ("Neutral.", "neutral"),
    ("Emotion: Fear", "fear"),
    ("The emotion is anger.", "anger"),
    ("**Emotion:** surprise", "surprise"),
    ("The speaker sounds angry, not sad.", "anger"),
    ("joy and sadness", X),
    ("anger or disgust", X),
    ("not angry", X),
    ("happy/sad", X),
    ("frustration", X),
    ("love", X),
    ("", X),
    ("I can't tell from text alone.", X),
    ("The emotion expressed is **surprise**.", "surprise"),
    ("Emotion: Joy 😊", "joy"),
    ("Neutral (the speaker is simply asking a question)", "neutral"),
    ("The speaker seems surprised.", "surprise"),
    ("Surprise/Shock", "surprise"),
    ("anger (frustration)", "anger"),
    ("Sadness and anger", X),
    ("neutral, joy, sadness, anger, surprise, fear or disgust", X),
    ("Utterance: Oh my God, you're angry!\nAnswer: surprise", "surprise"),
]

MUSTARD_CASES = [
    ("Sarcastic", "sarcastic"),
    ("sarcastic.", "sarcastic"),
    ("Not sarcastic", "not sarcastic"),
    ("not sarcastic.", "not sarcastic"),
    ("NOT SARCASTIC", "not sarcastic"),
    ("**Not sarcastic**", "not sarcastic"),
    ("non-sarcastic", "not sarcastic"),
    ("Non sarcastic", "not sarcastic"),
    ("No", "not sarcastic"),
    ("no.", "not sarcastic"),
    ("Yes.", "sarcastic"),
    ("yes", "sarcastic"),
    ("Yes, it's sarcastic.", "sarcastic"),
    ("No, the speaker is sincere.", "not sarcastic"),
    ("True", "sarcastic"),
    ("False", "not sarcastic"),
    ("Answer: No", "not sarcastic"),
    ("Sarcastic: no", "not sarcastic"),
    ("Sarcastic: yes", "sarcastic"),
    ("Is it sarcastic? Yes", "sarcastic"),
    ("Sarcasm: no", "not sarcastic"),
    ("It isn't sarcastic.", "not sarcastic"),
    ("The speaker is not being sarcastic.", "not sarcastic"),
    ("not at all sarcastic", "not sarcastic"),
    ("No sarcasm here.", "not sarcastic"),
    ("The speaker is being sarcastic", "sarcastic"),
    ("There is no doubt it is sarcastic", "sarcastic"),
    ("Sarcasm.", "sarcastic"),
    ("The speaker is speaking sarcastically.", "sarcastic"),
    ("sarcastic or not sarcastic", X),
    ("Yes or no", X),
    ("sarcastic/not sarcastic", X),
    ("I'm not sure whether it is sarcastic.", X),
    ("", X),
    ("I don't know", X),
    ("Maybe", X),
    ("Ironic", X),
    ("Sarcastic. Sheldon is mocking Leonard.", "sarcastic"),
    ("The utterance is sarcastic.", "sarcastic"),
    ("This is not sarcastic.", "not sarcastic"),
    ("Yes, the speaker is being sarcastic.", "sarcastic"),
    ("No, Penny means it.", "not sarcastic"),
    ("The speaker is likely being sarcastic.", "sarcastic"),
    ("Label: Not Sarcastic", "not sarcastic"),
    ("**Sarcastic**", "sarcastic"),
    ("Not Sarcastic.\n\nExplanation: the speaker is not being sarcastic.", "not sarcastic"),
    ("Sarcastic (the tone is mocking)", "sarcastic"),
    ("Nope", X),
    ("Yeah", X),
    ("Answer: yes or no", X),
]

RAVDESS_CASES = [
    ("Calm", "calm"),
    ("neutral", "neutral"),
    ("happy", "happy"),
    ("Happiness", "happy"),
    ("joy", "happy"),
    ("sad", "sad"),
    ("Sadness", "sad"),
    ("anger", "angry"),
    ("Angry!", "angry"),
    ("fear", "fearful"),
    ("Fearful", "fearful"),
    ("disgust", "disgust"),
    ("Disgusted", "disgust"),
    ("surprise", "surprised"),
    ("Surprised", "surprised"),
    ("Emotion: calm", "calm"),
    ("calm or neutral", X),
    ("not happy", X),
    ("excited", X),
    ("", X),
    ("Calm.", "calm"),
    ("The speaker sounds happy.", "happy"),
    ("Emotion: Surprised", "surprised"),
    ("Fearful (anxious)", "fearful"),
    ("The emotion is anger.", "angry"),
    ("Angry/Frustrated", "angry"),
    ("Neutral - the sentence is a plain statement.", "neutral"),
    ("**Sad**", "sad"),
    ("scared", "fearful"),
    ("Utterance: Kids are talking by the door\nAnswer: calm", "calm"),
    ("sad and fearful", X),
    ("I cannot determine the emotion from text alone.", X),
    ("Kids are talking by the door", X),
    ("neutral, calm, happy, sad, angry, fearful, disgust or surprised", X),
]

CSQA_EXAMPLE = Example(
    "q1",
    "csqa",
    "Where would you find magazines?",
    "B",
    ("bank", "bookstore", "market", "train station", "mortuary"),
)
CSQA_CASES = [
    ("B", "B"),
    ("b", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    ("B)", "B"),
    ("B:", "B"),
    ("**B**", "B"),
    ("`C`", "C"),
    ("Answer: B", "B"),
    ("Answer: (D)", "D"),
    ("The answer is (C).", "C"),
    ("The correct answer is D: train station", "D"),
    ("option b", "B"),
    ("Option E", "E"),
    ("Choice: C", "C"),
    ("I think it's E", "E"),
    ("b) bookstore", "B"),
    ("B. bookstore", "B"),
    ("B. Bookstore - magazines are sold there.", "B"),
    ("A", "A"),
    ("A.", "A"),
    ("a", "A"),
    ("Answer: A. bank", "A"),
    ("Not A, but B.", "B"),
    ("bookstore", "B"),
    ("Bookstore.", "B"),
    ("The bookstore", "B"),
    ("A bookstore.", "B"),
    ("A Bookstore", "B"),
    ("You would find them at a bookstore.", "B"),
    ("train station", "D"),
    ("The answer is market.", "C"),
    ("B or C", X),
    ("B/C", X),
    ("(B) or (C)", X),
    ("B, C", X),
    ("Either A or E", X),
    ("market or bank", X),
    ("B. bank", X),
    ("F", X),
    ("", X),
    ("I don't know.", X),
    ("None of the above.", X),
    ("magazines are everywhere", X),
    ("e.g. the market", X),
    ("The correct answer is **B. bookstore**.", "B"),
    ("Answer: (B) bookstore", "B"),
    ("(B) bookstore - because magazines are sold there", "B"),
    ("Option (D)", "D"),
    ("The best answer is D.", "D"),
    ("I would choose option C.", "C"),
    ("C is the correct answer.", "C"),
    ("The answer is C because a market sells many things.", "C"),
    ("Answer: E\nExplanation: A is wrong because banks do not sell magazines.", "E"),
    ("Answer: B\nA. bank\nB. bookstore\nC. market", "B"),
    ("A. bank\nB. bookstore\nC. market\nD. train station\nE. mortuary", X),
    ("Question: Where would you find magazines?\nAnswer: B", "B"),
    ("Not the bank, the bookstore.", "B"),
    ("Option b or option c", X),
    ("Answer with exactly one letter: A, B, C, D or E.\n\nD", "D"),
]


def _check(task_name: str, cases: list[tuple[str, str]], example: Example | None = None) -> list[str]:
    task = get_task(task_name)
    wrong = []
    for output, expected in cases:
        got = task.parse(output, example)
        if got != expected:
            wrong.append(f"{output!r}: expected {expected!r}, got {got!r}")
    return wrong


@pytest.mark.parametrize(
    ("task_name", "cases"),
    [
        ("sst2", SST2_CASES),
        ("ag_news", AG_NEWS_CASES),
        ("meld", MELD_CASES),
        ("mustard", MUSTARD_CASES),
        ("ravdess", RAVDESS_CASES),
    ],
)
def test_label_tables(task_name: str, cases: list[tuple[str, str]]) -> None:
    assert _check(task_name, cases) == []
    # Positive and negative controls: each table exercises labels and INVALID.
    assert {e for _, e in cases} >= {X} and len({e for _, e in cases}) >= 3


def test_csqa_table() -> None:
    assert _check("csqa", CSQA_CASES, CSQA_EXAMPLE) == []


def test_csqa_without_example_reads_letters_only() -> None:
    task = get_task("csqa")
    assert task.parse("(C)") == "C"
    assert task.parse("bookstore") == X


def test_csqa_nested_choices_take_the_longer() -> None:
    ex = Example("q", "csqa", "?", "C", ("cow", "pizza", "ground up dead cows", "mouth", "cow carcus"))
    assert get_task("csqa").parse("It is ground up dead cows.", ex) == "C"
    assert get_task("csqa").parse("cow", ex) == "A"


LABEL_TASKS = [n for n in TASK_NAMES if not get_task(n).open_answer]


@pytest.mark.parametrize("task_name", LABEL_TASKS)
def test_every_label_round_trips_in_common_wrappers(task_name: str) -> None:
    task = get_task(task_name)
    for label in task.labels:
        for template in (
            "{}",
            "**{}**",
            "Answer: {}",
            "The answer is {}.",
            "{}\n\nExplanation: because.",
            "({})",
        ):
            assert task.parse(template.format(label)) == label, (template, label)


@pytest.mark.parametrize("task_name", LABEL_TASKS)
def test_two_labels_joined_are_a_hedge(task_name: str) -> None:
    task = get_task(task_name)
    for a in task.labels:
        for b in task.labels:
            if a != b:
                for joiner in (" or ", "/", ", ", " and "):
                    assert task.parse(a + joiner + b) == X, (a, joiner, b)


@pytest.mark.parametrize("task_name", LABEL_TASKS)
def test_prompt_echo_does_not_create_a_hedge(task_name: str) -> None:
    task = get_task(task_name)
    label = task.labels[-1]
    echoed = task.prompt("some input") + " " + label
    assert task.parse(echoed) == label


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parsers_never_crash_and_return_a_label_or_invalid(output: str) -> None:
    for name in TASK_NAMES:
        task = get_task(name)
        got = task.parse(output, CSQA_EXAMPLE if name == "csqa" else None)
        assert isinstance(got, str)
        if not task.open_answer:
            assert got in (*task.labels, X)


# ---- TriviaQA: extraction, the official normalisation, alias matching ----


def official_normalize_answer(s: str) -> str:
    """Verbatim logic of triviaqa/utils/dataset_utils.py normalize_answer (the independent reference)."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def handle_punc(text: str) -> str:
        exclude = set(string.punctuation + "".join(["‘", "’", "´", "`"]))
        return "".join(ch if ch not in exclude else " " for ch in text)

    def lower(text: str) -> str:
        return text.lower()

    def replace_underscore(text: str) -> str:
        return text.replace("_", " ")

    return white_space_fix(remove_articles(handle_punc(lower(replace_underscore(s))))).strip()


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_normalize_answer_matches_official(s: str) -> None:
    assert normalize_answer(s) == official_normalize_answer(s)


@pytest.mark.parametrize(
    "s", ["The Beatles", "Dieppe, France", '"""Fast Eddie"" Felson"', "A-ha", "an apple_pie", "’Tis"]
)
def test_normalize_answer_known_strings(s: str) -> None:
    assert normalize_answer(s) == official_normalize_answer(s)


TRIVIA_CASES = [
    ("Onion", "Onion"),
    ("Onion.", "Onion"),
    ("The answer is Onion.", "Onion"),
    ("Answer: **Onion**", "Onion"),
    ("Onions. Brunswick is a variety of onion.", "Onions"),
    ("Answer: St. Louis, Missouri", "St. Louis, Missouri"),
    ("J. R. R. Tolkien wrote it.", "J. R. R. Tolkien wrote it"),
    ("Dr. No", "Dr. No"),
    ("**Dieppe**\nThe raid took place in 1942.", "Dieppe"),
    ("Question: What type of animal is a Garron?\nAnswer: Horse", "Horse"),
    ("Sure! The answer is Horse.", "Horse"),
    ("A: Antelope", "Antelope"),
    ("A-ha", "A-ha"),
    ('"Hat"', "Hat"),
    ("<|im_start|>assistant\nKing Edward III<|im_end|>", "King Edward III"),
    ("", X),
    ("   ", X),
    ("I don't know.", X),
    ("I'm not sure.", X),
    ("I'm sorry, I cannot answer that.", X),
    ("Unknown", X),
    ("The answer is **Onion**.", "Onion"),
    ("Answer: The Beatles", "The Beatles"),
    ("Paris\n\nParis is the capital of France.", "Paris"),
    ("1066.", "1066"),
    ("U.S. Grant", "U.S. Grant"),
    ("Mt. Everest is the highest.", "Mt. Everest is the highest"),
    ("Final answer: Mercury", "Mercury"),
    ("<think>Hmm, maybe Venus.</think>Mars", "Mars"),
    ("- Jupiter", "Jupiter"),
    ("Answer: 'Jabberwocky'", "Jabberwocky"),
    ("N/A", X),
    ("I have no idea.", X),
]


def test_triviaqa_extraction_table() -> None:
    assert _check("triviaqa", TRIVIA_CASES) == []


def test_alias_match_exact_and_contains() -> None:
    aliases = ["Edward III of England", "Edward III", "King Edward III"]
    assert alias_match("edward iii", aliases)
    assert alias_match("The King Edward III!", aliases)  # article and punctuation normalised away
    assert not alias_match("Edward II", aliases)
    assert not alias_match("It was Edward III", aliases)  # exact match is the official metric
    assert alias_match("It was Edward III", aliases, mode="contains")
    assert not alias_match("It was Edward IIIrd", aliases, mode="contains")  # whole words only
    assert not alias_match(X, aliases) and not alias_match("the", aliases)
    with pytest.raises(ValueError):
        alias_match("x", aliases, mode="fuzzy")  # type: ignore[arg-type]


def test_is_correct_uses_aliases() -> None:
    task = get_task("triviaqa")
    ex = Example("t", "triviaqa", "Q?", "Onion", meta={"aliases": ("Onion", "Allium cepa")})
    assert task.is_correct(task.parse("The answer is allium cepa."), ex)
    assert not task.is_correct(task.parse("Garlic"), ex)
    assert not task.is_correct(task.parse(""), ex)
    sst2 = get_task("sst2")
    assert sst2.is_correct(sst2.parse("**Positive**"), "positive")
    assert not sst2.is_correct(sst2.parse("positive or negative"), "positive")


def test_parse_module_imports_no_heavy_packages() -> None:
    import subprocess

    code = "import casceq.tasks, sys; print(any(m in sys.modules for m in ('torch', 'numpy', 'datasets')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
