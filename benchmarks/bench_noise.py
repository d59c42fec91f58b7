"""Mixing throughput: audio seconds mixed per wall second, casceq vs a per-sample loop and a plain numpy recipe.

Run: .venv/bin/python benchmarks/bench_noise.py [--clips 50] [--seconds 4]

All three compute the same thing (noise looped from an offset, scaled to the SNR of the segment actually added,
rescaled if the mix would clip); the script checks they agree before timing them side by side in one run.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from casceq.audio.babble import TalkerBabble
from casceq.audio.conditions import render
from casceq.audio.noise import mix_at_snr
from casceq.paths import datasets_dir

SR = 16_000


def loop_mix(speech: list[float], noise: list[float], snr_db: float, offset: int) -> list[float]:
    """Mix with the per-sample loop a first implementation might write."""
    n, m = len(speech), len(noise)
    seg = [noise[(offset + i) % m] for i in range(n)]
    ps = sum(x * x for x in speech) / n
    pn = sum(x * x for x in seg) / n
    scale = math.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    mix = [speech[i] + scale * seg[i] for i in range(n)]
    peak = max(abs(x) for x in mix)
    gain = 1.0 / peak if peak > 1.0 else 1.0
    return [x * gain for x in mix]


def tile_mix(speech: np.ndarray, noise: np.ndarray, snr_db: float, offset: int) -> np.ndarray:
    """Mix the straightforward numpy way: tile the noise, then crop."""
    reps = int(np.ceil((speech.size + offset) / noise.size)) + 1
    seg = np.tile(noise, reps)[offset : offset + speech.size]
    scale = np.sqrt(np.mean(speech**2) / (np.mean(seg**2) * 10 ** (snr_db / 10)))
    mix = speech + scale * seg
    peak = np.max(np.abs(mix))
    return mix / peak if peak > 1.0 else mix


def rate(fn, n_clips: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(n_clips):
        fn(i)
    return n_clips * seconds / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = int(args.seconds * SR)
    speech = [rng.standard_normal(n) * 0.1 for _ in range(args.clips)]
    noise = rng.standard_normal(int(17.7 * SR)) * 0.05  # as long as the NOISEX babble excerpt
    offsets = [int(np.random.default_rng(i).integers(noise.size)) for i in range(args.clips)]

    # Same outputs first (the casceq offset comes from its rng; reuse it for the others).
    res = mix_at_snr(speech[0], noise, 5.0, np.random.default_rng(0))
    ref_loop = np.array(loop_mix(speech[0].tolist(), noise.tolist(), 5.0, res.noise_offset))
    ref_tile = tile_mix(speech[0], noise, 5.0, res.noise_offset)
    assert np.allclose(res.mixture, ref_loop, atol=1e-6) and np.allclose(res.mixture, ref_tile, atol=1e-6)

    loop_clips = max(3, args.clips // 10)  # the loop is slow: fewer clips, same per-clip work
    speech_lists, noise_list = [s.tolist() for s in speech], noise.tolist()
    r_loop = rate(lambda i: loop_mix(speech_lists[i], noise_list, 5.0, offsets[i]), loop_clips, args.seconds)
    r_tile = rate(lambda i: tile_mix(speech[i], noise, 5.0, offsets[i]), args.clips, args.seconds)
    r_ours = rate(
        lambda i: mix_at_snr(speech[i], noise, 5.0, np.random.default_rng(i)), args.clips, args.seconds
    )
    print(
        f"clips of {args.seconds:g} s at {SR} Hz, noise {noise.size / SR:.1f} s (audio seconds per wall second)"
    )
    print(f"  per-sample Python loop : {r_loop:12,.0f}")
    print(f"  numpy tile + crop      : {r_tile:12,.0f}   ({r_tile / r_loop:,.0f}x the loop)")
    print(
        f"  casceq mix_at_snr      : {r_ours:12,.0f}   ({r_ours / r_loop:,.0f}x the loop, {r_ours / r_tile:.2f}x tile)"
    )

    root = datasets_dir()
    if root is not None and (root / "ravdess").is_dir():
        # End to end per item: draw MUSAN-style babble (3-7 RAVDESS talkers) and mix, after a warm-up.
        src = TalkerBabble.from_folder(root / "ravdess")
        sources = {"talkers": src}
        render("babble@5:talkers", speech[0], "warm", 0, sources=sources)
        for i in range(args.clips):  # warm the clip cache as a long run would be
            render("babble@5:talkers", speech[i], f"w{i}", 0, sources=sources)
        r_talk = rate(
            lambda i: render("babble@5:talkers", speech[i], f"e{i}", 0, sources=sources),
            args.clips,
            args.seconds,
        )
        print(
            f"  render babble@5:talkers: {r_talk:12,.0f}   (draw 3-7 RAVDESS talkers + mix; clip cache holds 512 of 1440 clips)"
        )


if __name__ == "__main__":
    main()
