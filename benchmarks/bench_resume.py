"""Re-running a finished run: its cost as a share of the first run's time (target: at most 2%).

One real experiment (Cascade-W: Whisper tiny.en -> the default backbone, and the text ceiling; SST-2, one
voice, clean and babble@0) is run into a fresh folder, then started again in a fresh process, as a user would.
The second start must find every row done and load no model. Both timed as whole CLI processes.

With ``--demo`` the experiment is ``make demo``'s (four systems, two tasks, two voices, clean and babble@0).

Measured (3 Dec 2026, this 2-core machine): the finished demo of a fresh clone (n = 30, first run 1,160 s on
an idle machine) started again with ``casceq demo``: 7.5 s wall (0.64%), while another job used both cores.
The re-run's cost is fixed (imports, reading the store, rebuilding the report), so a tiny experiment gives a
larger share: 2.1% at ``--n 12`` (22 Nov 2026).

Usage: python benchmarks/bench_resume.py [--n 16] [--demo]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--demo", action="store_true", help="the demo's experiment (items per task: --n)")
    args = ap.parse_args()
    from casceq.run.demo import demo_config_toml
    from casceq.systems.llm.bundled import DEFAULT_BACKBONE

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "exp.toml"
        if args.demo:
            cfg.write_text(demo_config_toml(n=args.n))
        else:
            cfg.write_text(
                f"""name = "resume"
voices = ["hibari-heart"]
conditions = ["clean", "babble@0"]
[tasks.sst2]
n = {args.n}
[[systems]]
name = "Cascade-W"
kind = "cascade"
asr = "faster-whisper:tiny.en"
llm = "{DEFAULT_BACKBONE}"
[[systems]]
name = "Text"
kind = "text"
llm = "{DEFAULT_BACKBONE}"
"""
            )
        cmd = [
            sys.executable,
            "-m",
            "casceq.cli",
            "run",
            str(cfg),
            "--out",
            str(Path(tmp) / "run"),
            "--no-progress",
        ]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times.append(time.perf_counter() - t0)
            print(out.strip().splitlines()[-1])
    print(f"first run : {times[0]:7.1f} s")
    print(f"re-run    : {times[1]:7.1f} s  ({times[1] / times[0]:.1%} of the first run; target <= 2%)")


if __name__ == "__main__":
    main()
