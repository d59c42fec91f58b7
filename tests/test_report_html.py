"""The HTML report in a real browser (headless Chromium): renders, figures load, explorer filters work.

Chromium is driven from Python with ``--dump-dom`` (the page's inline self-test runs when the URL ends in
``#selftest`` and writes its JSON result into ``<pre id="selftest">``) and ``--screenshot``. The screenshot
goes to the test's tmp dir and, when ``CASCEQ_SCREENSHOT_DIR`` is set, there too, for a person to look at.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from casceq.report.build import build_report
from tests.test_report_fixture import SYSTEMS, make_run

KINDS = {s.name: s.kind for s in SYSTEMS}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not found (apt-get install chromium)")


def _chromium(profile: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[bytes]:
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}", "--virtual-time-budget=8000", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, timeout=timeout, check=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("html")
    fx = make_run(root / "run")
    res = build_report([fx.root], formats=["html"], max_clips=12)
    return fx, res, res.out / "report.html", root


def _selftest(path: Path, profile: Path) -> dict:
    dom = _chromium(profile, "--dump-dom", path.as_uri() + "#selftest").stdout.decode("utf-8", "replace")
    found = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the page's self-test wrote nothing"
    return json.loads(html.unescape(found.group(1)))


def test_html_is_self_contained(page) -> None:
    _, _, path, _ = page
    text = path.read_text()
    assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', text)
    assert "<script src" not in text and "<link " not in text


def test_figures_render_and_explorer_filters_work(page) -> None:
    _, res, path, root = page
    out = _selftest(path, root / "profile")
    assert out["errors"] == []
    assert [f["id"] for f in out["figures"]] == ["img-figure1", "img-figure2", "img-figure3"]
    assert all(f["complete"] and f["width"] > 100 and f["height"] > 100 for f in out["figures"])
    assert len(out["explorer"]) == min(200, len(res.compare.pairs)) == 60
    changed = 0
    for rec in out["explorer"]:
        d = res.compare.disagreements(rec["a"], rec["b"], rec["task"], rec["condition"])
        group = next(
            g for g in res.compare.groups if (g.task, g.condition) == (rec["task"], rec["condition"])
        )
        shared = set(d.both_wrong_same) | set(d.both_wrong_different)
        expected = {
            "shared": [i for i in group.example_ids if i in shared],
            "shared_same": list(d.both_wrong_same),
            "disagree": list(d.labels_differ),
            "a_only": list(d.a_wrong_b_right),
            "b_only": list(d.a_right_b_wrong),
            "all": list(group.example_ids),
        }
        assert rec["ids"] == expected, (rec["a"], rec["b"], rec["task"], rec["condition"])
        changed += rec["ids"]["shared"] != rec["ids"]["disagree"]
    assert changed > 0  # changing the filter changed the listed rows


def test_audio_clips_are_capped_and_playable_uris(page) -> None:
    _, _, path, _ = page
    text = path.read_text()
    data = json.loads(re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
                      .group(1).replace("<\\/", "</"))  # fmt: skip
    assert len(data["clips"]) == 12 < data["n_wanted"]
    assert all(c["uri"].startswith("data:audio/flac;base64,") for c in data["clips"])
    assert sum(i >= 0 for g in data["groups"] for i in g["clip"]) == 12


def test_screenshot(page) -> None:
    _, _, path, root = page
    shot = root / "report.png"
    _chromium(root / "profile-shot", "--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}",
              path.as_uri())  # fmt: skip
    img = matplotlib.image.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05  # not a blank page
    target = os.environ.get("CASCEQ_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / "report.png")
