"""The Ray executor on a local Ray instance writes the same rows as the local executor."""

from __future__ import annotations

import pytest

from casceq.io.store import Store
from casceq.paths import datasets_dir
from casceq.run.config import load_config
from casceq.run.runner import run_experiment
from tests.tiny_models import tiny_causal_lm

ray = pytest.importorskip("ray", reason="the Ray executor needs `pip install 'casceq[ray]'`")
pytestmark = pytest.mark.slow
if datasets_dir() is None:  # pragma: no cover - a user's clone
    pytest.skip("../shared/datasets not found", allow_module_level=True)


def test_ray_executor_matches_local(tmp_path):
    llm = tiny_causal_lm(tmp_path / "llm")
    cfg_path = tmp_path / "exp.toml"
    cfg_path.write_text(
        f"""
name = "r"
voices = ["espeak-us"]
conditions = ["clean", "babble@5"]
calibration = "none"
bootstrap = 100
[tasks.sst2]
n = 4
[[systems]]
name = "Cascade"
kind = "cascade"
asr = "faster-whisper:tiny.en"
llm = "hf:{llm}"
[[systems]]
name = "Text"
kind = "text"
llm = "hf:{llm}"
"""
    )
    cfg = load_config(cfg_path)
    run_experiment(cfg, tmp_path / "local", show_progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        summary = run_experiment(cfg, tmp_path / "ray", show_progress=False, executor="ray")
    finally:
        ray.shutdown()
    assert not summary.failed

    def rows(d):
        with Store(d / "store.sqlite") as s:
            return {
                (p.system, p.condition, p.example_id): (p.label, p.transcript) for p in s.predictions(run="r")
            }

    local, distributed = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(local) == 2 * 2 * 4
    assert distributed == local
