"""Peak memory of ``casceq capture`` for N and 4N utterances: streamed shards stay flat, keeping states grows.

Each measurement runs in a fresh subprocess (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) so peaks do not
mix. The model is a random-weight Whisper encoder of tiny.en's width (384, 3 layers) built offline; clips are
3 s of noise-modulated tones. Two modes, side by side:

- ``streamed``: :func:`casceq.mech.capture.capture` writing shards of ``SHARD_POSITIONS`` rows;
- ``in-memory``: the same forward passes (``run_clip``) with every utterance's states kept in a list, as a
  naive capture would.

Run: ``.venv/bin/python benchmarks/bench_capture_memory.py [N]`` (default N = 25).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHARD_POSITIONS = 1_000
SR = 16_000

CHILD = r"""
import json, resource, sys
from pathlib import Path
import numpy as np, soundfile as sf, torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from casceq.mech.adapters import layout_of
from casceq.mech.capture import Utterance, capture, run_clip

mode, n, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
torch.set_num_threads(1)
torch.manual_seed(0)
cfg = WhisperConfig(d_model=384, encoder_layers=3, decoder_layers=1, encoder_attention_heads=6,
                    decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=64, vocab_size=64,
                    num_mel_bins=80, max_source_positions=1500, pad_token_id=0,
                    bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
model = WhisperModel(cfg).eval()
fe = WhisperFeatureExtractor(feature_size=80)
t = np.arange(3 * 16000) / 16000
wav = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
sf.write(work / "clip.wav", wav, 16000)
utts = (Utterance(f"u{i}", str(work / "clip.wav"), "a clip") for i in range(n))  # a generator: nothing kept
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "streamed":
    capture(model, utts, str(work / f"cap{n}"), model="bench", layers=[0, 1, 2, 3], feature_extractor=fe,
            pitch=False, dtype="float32", shard_positions=SHARD_POSITIONS_VALUE)
else:
    lay = layout_of(model)
    kept = [run_clip(model, lay, wav, [0, 1, 2, 3], feature_extractor=fe) for _ in utts]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "n": n, "peak_mib": peak / 1024, "growth_mib": (peak - base) / 1024}))
""".replace("SHARD_POSITIONS_VALUE", str(SHARD_POSITIONS))


def measure(mode: str, n: int, work: Path) -> dict[str, float]:
    """Peak RSS of one capture of ``n`` utterances in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(n), str(work)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} N={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            (mode, k): measure(mode, k, Path(tmp)) for mode in ("streamed", "in-memory") for k in (n, 4 * n)
        }
    print(
        f"peak RSS (MiB), 3 s clips, 4 layers x 150 positions x 384 dims per clip, shards of {SHARD_POSITIONS} rows"
    )
    print(f"{'mode':<10} {'N=' + str(n):>10} {'N=' + str(4 * n):>10} {'ratio 4N/N':>11} {'growth N->4N':>13}")
    for mode in ("streamed", "in-memory"):
        a, b = rows[(mode, n)], rows[(mode, 4 * n)]
        print(
            f"{mode:<10} {a['peak_mib']:>10.1f} {b['peak_mib']:>10.1f} {b['peak_mib'] / a['peak_mib']:>11.3f} "
            f"{b['peak_mib'] - a['peak_mib']:>12.1f}M"
        )


if __name__ == "__main__":
    main()
