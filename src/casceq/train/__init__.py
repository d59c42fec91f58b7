"""Training the offline speech LLM (``casceq train speech-llm``): data, distillation, loop, shipped checkpoint.

See docs/speech_llm_training.md. Importing this package imports no torch or transformers.
"""
