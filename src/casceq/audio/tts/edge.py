"""Microsoft Edge neural voices through ``edge-tts`` (the paper's voices). ONLINE ONLY: optional extra ``casceq[edge]``.

edge-tts (LGPL-3.0) calls Microsoft's speech service; its voices are covered by Microsoft's terms, not by an
open licence. Offline machines get a clear :class:`TTSError` per item, and ``available()`` is False.
"""

from __future__ import annotations

import importlib.util
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from casceq.audio.tts.base import TTSBackend, TTSError
from casceq.errors import require

if TYPE_CHECKING:
    import numpy as np

SERVICE_HOST = "speech.platform.bing.com"
"""The host edge-tts talks to; reachability decides ``available()``."""


def service_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Edge speech service opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((SERVICE_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


class EdgeBackend(TTSBackend):
    """An Edge voice; setting ``voice`` (e.g. ``"en-US-AriaNeural"``)."""

    def available(self) -> bool:
        """Return True if edge-tts is installed and the service answers (needs internet)."""
        return importlib.util.find_spec("edge_tts") is not None and service_reachable()

    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        import asyncio

        edge_tts = require("edge_tts", "The Edge-TTS voices", package="edge-tts", extra="edge")
        sf = require("soundfile", "Decoding Edge-TTS audio", extra="audio")
        with tempfile.TemporaryDirectory(prefix="casceq-edge-") as tmp:
            out = Path(tmp) / "out.mp3"
            try:
                asyncio.run(edge_tts.Communicate(text, self.info.setting("voice")).save(str(out)))
            except Exception as exc:  # aiohttp/websocket errors differ by version; all mean "no audio"
                raise TTSError(f"Edge-TTS needs internet access to {SERVICE_HOST} and failed: {exc}") from exc
            wav, sr = sf.read(str(out), dtype="float32", always_2d=False)
        return wav, int(sr)
