"""The matched-pair prompt change (issue 20) left the bundled systems' prompts as they were.

Every literal below was produced by the code before that change (main at 5c84633^1, ``Task.prompt``,
``prompting.render`` and the native Ultravox model's ``_matched_pieces`` on the old ``"The input is the
audio."`` wording); the tests hold today's code to those frozen strings, never to its own output.
"""

from __future__ import annotations

from typing import Any

import pytest

from casceq.systems.compose import cascade_prompt, speech_prompt
from casceq.tasks import TASK_NAMES, get_task
from casceq.tasks.base import Task
from casceq.types import Example

# fmt: off
CASCADE = {
    'sst2': 'Classify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText: the film was great\nAnswer:',
    'ag_news': 'Classify the topic of the following news article. Answer with exactly one of: World, Sports, Business, Sci/Tech.\n\nText: the film was great\nAnswer:',
    'csqa': 'Answer the following multiple-choice question. Answer with exactly one letter: A, B, C, D or E.\n\nQuestion: the film was great\nA. choice 0\nB. choice 1\nC. choice 2\nD. choice 3\nE. choice 4\nAnswer:',
    'triviaqa': 'Answer the following question. Answer with only the answer, in as few words as possible.\n\nQuestion: the film was great\nAnswer:',
    'meld': 'Classify the emotion of the speaker of the following utterance. Answer with exactly one word: neutral, joy, sadness, anger, surprise, fear or disgust.\n\nUtterance: the film was great\nAnswer:',
    'mustard': 'Is the speaker of the following utterance being sarcastic? Answer with exactly one label: sarcastic or not sarcastic.\n\nUtterance: the film was great\nAnswer:',
    'ravdess': 'Classify the emotion of the speaker of the following utterance. Answer with exactly one word: neutral, calm, happy, sad, angry, fearful, disgust or surprised.\n\nUtterance: the film was great\nAnswer:',
}
RENDERED = {
    'gemma-3-270m': 'Classify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText: a dull film\nAnswer: negative\n\nText: a joy\nAnswer: positive\n\nText: the film was great\nAnswer:',
    'smollm2-135m-instruct': '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nClassify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText: a dull film\nAnswer:<|im_end|>\n<|im_start|>assistant\nnegative<|im_end|>\n<|im_start|>user\nClassify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText: a joy\nAnswer:<|im_end|>\n<|im_start|>assistant\npositive<|im_end|>\n<|im_start|>user\nClassify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText: the film was great\nAnswer:<|im_end|>\n<|im_start|>assistant\n',
}
SPEECH_PIECES = {
    'sst2': ['<bos>', 'Classify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText:', '<AUDIO>', '\nAnswer:'],
    'ag_news': ['<bos>', 'Classify the topic of the following news article. Answer with exactly one of: World, Sports, Business, Sci/Tech.\n\nText:', '<AUDIO>', '\nAnswer:'],
    'csqa': ['<bos>', 'Answer the following multiple-choice question. Answer with exactly one letter: A, B, C, D or E.\n\nQuestion:', '<AUDIO>', '\nA. choice 0\nB. choice 1\nC. choice 2\nD. choice 3\nE. choice 4\nAnswer:'],
    'triviaqa': ['<bos>', 'Answer the following question. Answer with only the answer, in as few words as possible.\n\nQuestion:', '<AUDIO>', '\nAnswer:'],
    'meld': ['<bos>', 'Classify the emotion of the speaker of the following utterance. Answer with exactly one word: neutral, joy, sadness, anger, surprise, fear or disgust.\n\nUtterance:', '<AUDIO>', '\nAnswer:'],
    'mustard': ['<bos>', 'Is the speaker of the following utterance being sarcastic? Answer with exactly one label: sarcastic or not sarcastic.\n\nUtterance:', '<AUDIO>', '\nAnswer:'],
    'ravdess': ['<bos>', 'Classify the emotion of the speaker of the following utterance. Answer with exactly one word: neutral, calm, happy, sad, angry, fearful, disgust or surprised.\n\nUtterance:', '<AUDIO>', '\nAnswer:'],
}
SHOT_BODIES = ['Classify the sentiment of the following text. Answer with exactly one word: positive or negative.\n\nText: \x00AUDIO\x00\nAnswer:', 'Classify the topic of the following news article. Answer with exactly one of: World, Sports, Business, Sci/Tech.\n\nText: \x00AUDIO\x00\nAnswer:', 'Answer the following multiple-choice question. Answer with exactly one letter: A, B, C, D or E.\n\nQuestion: \x00AUDIO\x00\nA. choice 0\nB. choice 1\nC. choice 2\nD. choice 3\nE. choice 4\nAnswer:', 'Answer the following question. Answer with only the answer, in as few words as possible.\n\nQuestion: \x00AUDIO\x00\nAnswer:', 'Classify the emotion of the speaker of the following utterance. Answer with exactly one word: neutral, joy, sadness, anger, surprise, fear or disgust.\n\nUtterance: \x00AUDIO\x00\nAnswer:', 'Is the speaker of the following utterance being sarcastic? Answer with exactly one label: sarcastic or not sarcastic.\n\nUtterance: \x00AUDIO\x00\nAnswer:', 'Classify the emotion of the speaker of the following utterance. Answer with exactly one word: neutral, calm, happy, sad, angry, fearful, disgust or surprised.\n\nUtterance: \x00AUDIO\x00\nAnswer:']
# fmt: on
TRANSCRIPT = "  the film was great  "


def _example(task: Task) -> Example:
    letters = bool(task.labels) and all(len(label) == 1 for label in task.labels)
    choices = tuple(f"choice {i}" for i in range(len(task.labels))) if letters else ()
    return Example(
        id="x", task=task.name, text="", label=task.labels[0] if task.labels else "", choices=choices
    )


def test_frozen_literals_cover_every_built_in_task() -> None:
    assert set(CASCADE) == set(SPEECH_PIECES) == set(TASK_NAMES)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_cascade_prompts_are_the_frozen_strings(name: str) -> None:
    task = get_task(name)
    assert cascade_prompt(task, _example(task), TRANSCRIPT) == CASCADE[name]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_the_bundled_speech_llm_gets_the_frozen_pieces_and_shot_key(name: str) -> None:
    from casceq.systems.speech_llm._hf import AUDIO
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend

    seen: list[str] = []

    class Stub:  # only what _matched_pieces reads
        tokenizer = type("T", (), {"bos_token": "<bos>"})()

        def shots_for(self, body: str) -> tuple[()]:
            seen.append(body)
            return ()

    task = get_task(name)
    pieces = UltravoxNativeBackend._matched_pieces(Stub(), speech_prompt(task, _example(task)))  # type: ignore[arg-type]
    assert ["<AUDIO>" if p is AUDIO else str(p) for p in pieces] == SPEECH_PIECES[name]
    assert seen == [SHOT_BODIES[TASK_NAMES.index(name)]]  # the shots are drawn for the same key as before


@pytest.mark.slow  # a fresh clone converts the bundled GGUF files first (about a minute each)
@pytest.mark.parametrize("llm", sorted(RENDERED))
def test_bundled_cascade_llms_render_the_frozen_context(llm: str) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from casceq.systems.llm.bundled import resolve_llm
    from casceq.systems.llm.prompting import choose_format, render

    path, _ = resolve_llm(llm)
    tokenizer: Any = AutoTokenizer.from_pretrained(path)
    task = get_task("sst2")
    ex = _example(task)
    shots = [(task.prompt("a dull film", ex), "negative"), (task.prompt("a joy", ex), "positive")]
    got = render(tokenizer, choose_format(tokenizer, "auto"), task.prompt("the film was great", ex), shots)
    assert got == RENDERED[llm]
