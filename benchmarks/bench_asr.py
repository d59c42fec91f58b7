"""Whisper back ends side by side: seconds per clip and WER, tiny.en and base.

Compared in one run, on the same clips (espeak-ng renderings of SST-2 dev sentences, or fixed sentences when
the datasets are absent, plus RAVDESS clips whose two sentences are known):

- faster-whisper (CTranslate2 int8), one clip at a time (``batch_size=1``): the default cascade ASR;
- faster-whisper, ``batch_size=8`` windows per CTranslate2 call;
- transformers Whisper converted from the same weights (fp32), ``batch_size=8``.

Each configuration is warmed up on two clips first. Seconds per clip are wall time over the clip set; the
machine's load average is printed because other jobs change the absolute figures (compare ratios).

Run: ``.venv/bin/python benchmarks/bench_asr.py [--n 10] [--models tiny.en base]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import time

import numpy as np

from casceq.audio.textnorm import word_error_rate
from casceq.paths import datasets_dir
from casceq.systems.asr import make_asr

FALLBACK = [
    "The movie was surprisingly good and I enjoyed every minute.",
    "Stocks fell sharply after the central bank raised interest rates.",
    "Where is the nearest train station?",
    "I would like a cup of coffee, please.",
    "The team won the championship after a long season.",
]
RAVDESS_TEXT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def espeak_clips(n: int) -> tuple[list[np.ndarray], list[str]]:
    import soundfile as sf
    from scipy.signal import resample_poly

    root = datasets_dir()
    texts = FALLBACK
    if root is not None and (root / "sst2" / "dev.tsv").is_file():
        with open(root / "sst2" / "dev.tsv", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        texts = [r[0] for r in rows if 6 <= len(r[0].split()) <= 20]
    texts = (texts * n)[:n]
    audio = []
    for t in texts:
        wav = subprocess.run(["espeak-ng", "--stdout", t], capture_output=True, check=True).stdout
        a, sr = sf.read(io.BytesIO(wav), dtype="float32")
        audio.append(resample_poly(a, 16000, sr).astype(np.float32))
    return audio, texts


def ravdess_clips(n: int) -> tuple[list[np.ndarray], list[str]]:
    import soundfile as sf

    root = datasets_dir()
    if root is None or not (root / "ravdess").is_dir():
        return [], []
    files = sorted((root / "ravdess").glob("Actor_*/*.flac"))[:: max(1, 1440 // max(n, 1))][:n]
    return [sf.read(f, dtype="float32")[0] for f in files], [
        RAVDESS_TEXT[f.name.split("-")[4]] for f in files
    ]


def measure(
    spec: str, audio: list[np.ndarray], refs: list[str], **options: object
) -> tuple[float, float, list[str]]:
    asr = make_asr(spec, **options)
    asr.transcribe(audio[:2])  # warm-up: first-call allocations and lazy initialisation
    t0 = time.perf_counter()
    texts = [t.text for t in asr.transcribe(audio)]
    return (time.perf_counter() - t0) / len(audio), word_error_rate(refs, texts), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="clips per source (espeak, RAVDESS)")
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    e_audio, e_refs = espeak_clips(args.n)
    r_audio, r_refs = ravdess_clips(args.n)
    audio, refs = e_audio + r_audio, e_refs + r_refs
    mean_s = sum(len(a) for a in audio) / len(audio) / 16000
    print(f"{len(e_audio)} espeak-ng + {len(r_audio)} RAVDESS clips, mean {mean_s:.1f} s; 2 threads; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    configs = [
        ("faster-whisper int8, 1 at a time", "faster-whisper", {"batch_size": 1}),
        ("faster-whisper int8, batch 8", "faster-whisper", {"batch_size": 8}),
        ("hf-whisper fp32 (converted), batch 8", "hf-whisper", {"batch_size": 8}),
    ]
    print(f"{'model':8} {'back end':40} {'s/clip':>7} {'vs 1-at-a-time':>15} {'WER':>6} {'same text':>10}")
    for model in args.models:
        base_s, base_texts = None, None
        for label, kind, options in configs:
            s, wer, texts = measure(f"{kind}:{model}", audio, refs, **options)
            base_s = base_s or s
            base_texts = base_texts or texts
            same = sum(a == b for a, b in zip(texts, base_texts, strict=True))
            print(f"{model:8} {label:40} {s:7.3f} {base_s / s:14.2f}x {wer:6.3f} {same:>5}/{len(texts)}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
