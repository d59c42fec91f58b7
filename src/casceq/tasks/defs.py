"""The seven tasks of the paper: labels, instructions, synonyms and parsers.

Synonyms are only surface forms that cannot mean another label of the same task: forms of the label word itself
("sport", "happiness" -> joy, "angry" -> anger) and the spelled-out Sci/Tech ("science", "technology"). Topic
words that *usually* go with a class but not always ("politics", "economy", "finance", "international") are not
synonyms: the parser never guesses.
"""

from __future__ import annotations

from casceq.tasks.base import Task
from casceq.tasks.choices import LETTERS, ChoiceParser
from casceq.tasks.parsing import LabelParser, parse_open


def _one_of(labels: tuple[str, ...]) -> str:
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def _label_task(
    name: str,
    labels: tuple[str, ...],
    *,
    text_sufficient: bool,
    instruction: str,
    input_name: str,
    synonyms: tuple[tuple[str, str], ...] = (),
    anchored: tuple[tuple[str, str], ...] = (),
    negated_to: tuple[tuple[str, str], ...] = (),
    extra_prefix: str | None = None,
) -> Task:
    parser = LabelParser(
        labels, synonyms, anchored=anchored, negated_to=negated_to, extra_prefix=extra_prefix
    )
    return Task(name, labels, text_sufficient, False, instruction, input_name, synonyms, parser)


SST2_LABELS = ("negative", "positive")
SST2 = _label_task(
    "sst2",
    SST2_LABELS,
    text_sufficient=True,
    instruction="Classify the sentiment of the following text. Answer with exactly one word: positive or negative.",
    input_name="Text",
    synonyms=(("pos", "positive"), ("neg", "negative")),
)

AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
AG_NEWS = _label_task(
    "ag_news",
    AG_NEWS_LABELS,
    text_sufficient=True,
    instruction=(
        "Classify the topic of the following news article. "
        "Answer with exactly one of: World, Sports, Business, Sci/Tech."
    ),
    input_name="Text",
    synonyms=(
        ("world news", "World"),
        ("sport", "Sports"),
        ("sports news", "Sports"),
        ("business news", "Business"),
        ("scitech", "Sci/Tech"),
        ("science", "Sci/Tech"),
        ("technology", "Sci/Tech"),
        ("tech", "Sci/Tech"),
        ("science and technology", "Sci/Tech"),
        ("science/technology", "Sci/Tech"),
        ("sci/tech news", "Sci/Tech"),
    ),
)

CSQA = Task(
    "csqa",
    LETTERS,
    True,
    False,
    "Answer the following multiple-choice question. Answer with exactly one letter: A, B, C, D or E.",
    "Question",
    (),
    ChoiceParser(LETTERS),
)

TRIVIAQA = Task(
    "triviaqa",
    (),
    True,
    True,
    "Answer the following question. Answer with only the answer, in as few words as possible.",
    "Question",
    (),
    parse_open,
)

MELD_LABELS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
MELD = _label_task(
    "meld",
    MELD_LABELS,
    text_sufficient=False,
    instruction=(
        "Classify the emotion of the speaker of the following utterance. "
        f"Answer with exactly one word: {_one_of(MELD_LABELS)}."
    ),
    input_name="Utterance",
    synonyms=(
        ("happiness", "joy"),
        ("happy", "joy"),
        ("joyful", "joy"),
        ("sad", "sadness"),
        ("angry", "anger"),
        ("surprised", "surprise"),
        ("fearful", "fear"),
        ("afraid", "fear"),
        ("scared", "fear"),
        ("disgusted", "disgust"),
    ),
)

MUSTARD_LABELS = ("sarcastic", "not sarcastic")
MUSTARD = _label_task(
    "mustard",
    MUSTARD_LABELS,
    text_sufficient=False,
    instruction=(
        "Is the speaker of the following utterance being sarcastic? "
        "Answer with exactly one label: sarcastic or not sarcastic."
    ),
    input_name="Utterance",
    synonyms=(
        ("sarcasm", "sarcastic"),
        ("sarcastically", "sarcastic"),
        ("non-sarcastic", "not sarcastic"),
        ("nonsarcastic", "not sarcastic"),
        ("non sarcastic", "not sarcastic"),
        ("unsarcastic", "not sarcastic"),
        ("no sarcasm", "not sarcastic"),
        ("not sarcasm", "not sarcastic"),
    ),
    # Yes/no answers to "Is the speaker being sarcastic?"; only as the first word of the answer.
    anchored=(
        ("yes", "sarcastic"),
        ("true", "sarcastic"),
        ("no", "not sarcastic"),
        ("false", "not sarcastic"),
    ),
    negated_to=(("sarcastic", "not sarcastic"),),
    # "Sarcastic: yes", "Is it sarcastic? No" introduce a yes/no answer.
    extra_prefix=(
        r"(?:is\s+(?:it|this|the\s+speaker)\s+(?:being\s+)?)?(?:sarcastic|sarcasm)\s*[:?=]\s*"
        r"(?=(?:yes|no|true|false)\b)"
    ),
)

RAVDESS_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
RAVDESS = _label_task(
    "ravdess",
    RAVDESS_LABELS,
    text_sufficient=False,
    instruction=(
        "Classify the emotion of the speaker of the following utterance. "
        f"Answer with exactly one word: {_one_of(RAVDESS_LABELS)}."
    ),
    input_name="Utterance",
    synonyms=(
        ("happiness", "happy"),
        ("joy", "happy"),
        ("joyful", "happy"),
        ("sadness", "sad"),
        ("anger", "angry"),
        ("fear", "fearful"),
        ("afraid", "fearful"),
        ("scared", "fearful"),
        ("disgusted", "disgust"),
        ("surprise", "surprised"),
        ("calmness", "calm"),
    ),
)

TASKS: tuple[Task, ...] = (SST2, AG_NEWS, CSQA, TRIVIAQA, MELD, MUSTARD, RAVDESS)
