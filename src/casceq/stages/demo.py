"""The demo stage (``casceq demo``, ``make demo``): the offline default experiment through the run stage.

The experiment is ``casceq.run.demo.demo_config``; its TOML form is written into the run folder
(``experiment.toml``) so ``casceq run`` can re-run or extend it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from casceq.run.demo import DEMO_COMMENT, demo_config
from casceq.stages.run import RunConfig, RunResult, run, run_statistics

EXPERIMENT_TOML = "experiment.toml"
"""The demo's experiment as a TOML file, in its run folder."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's run folder, items per task (None: ``DEMO_N``) and progress bars."""

    out: Path
    n: int | None = None
    show_progress: bool = True


def write_config(path: Path, n: int | None = None) -> None:
    """Write the demo's experiment TOML (``casceq demo --write-config``)."""
    path.write_text(demo_config(n).to_toml(DEMO_COMMENT))


def demo(config: DemoConfig) -> RunResult:
    """Run (or resume) the demo; the result always carries the run's statistics (computed once)."""
    experiment = demo_config(config.n)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / EXPERIMENT_TOML).write_text(experiment.to_toml(DEMO_COMMENT))
    result = run(RunConfig(experiment, config.out, show_progress=config.show_progress))
    if result.compare is None:  # a resumed demo with nothing new: the statistics of its folder
        result = dataclasses.replace(result, compare=run_statistics(config.out))
    return result
