"""casceq.systems.llm."""
