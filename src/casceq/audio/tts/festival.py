"""The Festival Speech Synthesis System via its ``text2wave`` script (X11-style licence; voices from Debian)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from casceq.audio.tts.base import TTSBackend, ascii_text, have_program, run_to_wav

if TYPE_CHECKING:
    import numpy as np

VOICE_DIRS = (
    Path("/usr/share/festival/voices"),
    Path("/usr/lib/festival/voices"),
    Path("/usr/local/share/festival/voices"),
)
"""Where Festival installations keep voices (``<dir>/<language>/<voice>/``)."""

_VOICE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def festival_has_voice(voice: str) -> bool:
    """Whether a Festival voice is installed in one of ``VOICE_DIRS``."""
    return any(d.is_dir() and any(d.glob(f"*/{voice}")) for d in VOICE_DIRS)


class FestivalBackend(TTSBackend):
    """A Festival voice: setting ``voice`` (``"kal_diphone"``, ``"cmu_us_slt_arctic_hts"``)."""

    def available(self) -> bool:
        """Return True if ``text2wave`` and the voice are installed."""
        return have_program("text2wave") and festival_has_voice(self.info.setting("voice"))

    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        voice = self.info.setting("voice")
        if not _VOICE_NAME.match(voice):  # it is spliced into a Scheme expression
            raise ValueError(f"bad festival voice name {voice!r}")
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-o", "{out}", "{text}"]
        return run_to_wav(cmd, "out.wav", text_file="in.txt", text=ascii_text(text))
