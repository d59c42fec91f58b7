"""The §5.4 diagnostic, the continuous acoustic concept and the all-position lens on real weights.

A shipped offline speech LLM (default ``ultravox-native:bundled``) is captured on N RAVDESS clips (seeded
subsample; the capture is resumed when the folder exists), a seeded 30% of the items is held out, the
``acoustic`` (9 classes) and ``acoustic2d`` (standardised energy, ln F0) erasers are fitted on the rest at the
captured layers, and ``casceq.mech.erasure.text_diagnostic`` scores the bag-of-characters readout on the held-out
clips with no erasure, each concept's erasers and a rank-matched random subspace. Then the all-position lens
(``casceq.stages.lens.lens_all_positions``) runs over the capture. Prints the held-out erasure checks, each
concept's support, the diagnostic table and the lens table; writes ``OUT/diagnostic.json`` and
``OUT/mech/lens_all.json``.

RAVDESS has two sentences, so text decodability here is mostly which sentence was said.

Run: ``.venv/bin/python benchmarks/bench_erasure_diagnostic.py --n 48 --out /tmp/diag``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from casceq.mech.adapters import layout_of
from casceq.mech.erasure import clip_frames, fit_concept, text_diagnostic
from casceq.mech.erasure_concepts import define_concept
from casceq.mech.erasure_diagnostic import split_heldout
from casceq.stages.capture import CaptureConfig, run_capture
from casceq.stages.context import StageContext
from casceq.stages.erase import capture_clips
from casceq.stages.lens import lens_all_positions

CONCEPTS = ("acoustic", "acoustic2d")


def main() -> None:
    """Capture, fit, diagnose, lens; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ultravox-native:bundled")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    t0 = time.time()
    out = Path(args.out)
    cap = out / "capture"
    cfg = CaptureConfig(
        model=args.model, out=str(cap), task="ravdess", n=args.n, dtype="float32", resume=True
    )
    ctx = StageContext(cfg.context())
    print(run_capture(cfg, ctx).summary(), f"({time.time() - t0:.0f} s)", flush=True)
    backend = ctx.model(args.model, text_llm_ok=False).obj
    clips, layers = capture_clips(cap)
    keep, held = split_heldout([c.id for c in clips], args.fraction, 0)
    fit, heldout = [clips[i] for i in keep], [clips[i] for i in held]
    frames = clip_frames(layout_of(backend), fit)
    fitted = {}
    for name in CONCEPTS:
        concept = define_concept(name, [c.transcript for c in fit], frames)
        fitted[name], checks, support = fit_concept(backend, fit, concept, list(layers), frames=frames)
        for c in checks:
            print(
                f"{name} layer {c.layer}: held-out {c.metric} before {c.before:.3f} after {c.after:.3f} "
                f"chance {c.chance:.3f} rank {c.rank}"
            )
        print(
            f"{name} support: {support.n_supported} of {len(support.dims)}: {support.describe()}", flush=True
        )
    diag = text_diagnostic(backend, fitted, fit, heldout, list(layers), list(CONCEPTS))
    print(diag.markdown(), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnostic.json").write_text(json.dumps(diag.to_json(), indent=1) + "\n")
    lens = lens_all_positions(backend, cap)
    lens.write(out, "mech/lens_all.json")
    print(lens.markdown(), f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
