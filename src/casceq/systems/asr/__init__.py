"""casceq.systems.asr."""
