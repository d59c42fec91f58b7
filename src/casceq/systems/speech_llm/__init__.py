"""casceq.systems.speech_llm."""
