"""casceq.audio.tts."""
