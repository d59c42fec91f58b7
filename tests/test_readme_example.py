"""The README's worked experiment is a config casceq accepts, and its matched cascade is the registry's pairing."""

from __future__ import annotations

import re
from pathlib import Path

from casceq.run.build import backbone_of
from casceq.run.config import load_config
from casceq.systems.speech_llm import backbone_info

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_experiment_pairs_the_speech_llm_with_its_registered_cascade(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(# experiment\.toml\n.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block, "README lost its experiment.toml example"
    path = tmp_path / "experiment.toml"
    path.write_text(block.group(1), encoding="utf-8")
    cfg = load_config(path)
    speech = next(s for s in cfg.systems if s.kind == "speech_llm")
    assert speech.model is not None
    info = backbone_info(speech.model.partition(":")[2])
    assert info is not None and info.llm is not None
    for other in (s for s in cfg.systems if s.kind in ("cascade", "text")):
        # Same LLM, the settings it needs to load (remote code, an explicit chat template), the same backbone name.
        assert other.llm == info.llm, other.name
        assert {k: other.settings.get(k) for k in info.settings} == dict(info.settings), other.name
        assert (other.backbone or backbone_of(other.llm)).lower() == info.name.lower(), other.name
