"""An OpenAI-compatible chat-completions server as an ``LLMBackend`` (vLLM serve, llama.cpp server, TGI, OpenAI).

Standard library only (``urllib``). Requests are retried on 429, 5xx, timeouts and connection errors with
exponential backoff, honouring ``Retry-After``; other 4xx fail at once. The API key is read from the
environment variable named by ``api_key_env`` at each request: it is never stored on the object, logged, or
put in an error message.

``generate`` is the normal mode. ``score_options`` needs a server that returns ``logprobs`` with
``top_logprobs``: the log-probability of each option is read from the first answer token's top alternatives,
so it is exact only for single-token options (labels such as ``positive`` or ``A``); variants of an option
that differ in case or surrounding spaces are summed, and an option absent from the top-k gets an upper bound
just below the least likely listed token.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from casceq.errors import CasceqError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(CasceqError):
    """The server refused a request, or kept failing after every retry."""


class ScoringUnsupported(CasceqError):
    """``score_options`` needs log-probabilities that this server does not return."""


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIChatLLM:
    """Chat completions over HTTP.

    Args:
        model: Model name the server expects.
        base_url: API root, e.g. ``"http://127.0.0.1:8000/v1"``.
        api_key_env: Name of the environment variable holding the key (unset: no ``Authorization`` header).
        timeout: Seconds per request.
        max_retries: Retries after the first attempt.
        backoff: First retry delay in seconds; doubles each retry, capped at ``max_backoff``.
        max_backoff: Longest wait, also the cap on ``Retry-After``.
        system_prompt: Optional system message.
        top_logprobs: Alternatives requested per token for ``score_options`` (OpenAI allows up to 20).
        concurrency: Parallel requests.
        backbone: Backbone id (default: the model name after its last ``/``, lower-cased).
        sleep: Sleep function (tests pass a recorder).
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        system_prompt: str | None = None,
        top_logprobs: int = 20,
        concurrency: int = 4,
        backbone: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model, self.url = model, base_url.rstrip("/") + "/chat/completions"
        self.api_key_env, self.timeout, self.max_retries = api_key_env, timeout, max_retries
        self.backoff, self.max_backoff, self.sleep = backoff, max_backoff, sleep
        self.system_prompt, self.top_logprobs, self.concurrency = system_prompt, top_logprobs, concurrency
        self.backbone = backbone or model.rsplit("/", 1)[-1].lower()

    def __repr__(self) -> str:
        return f"OpenAIChatLLM(model={self.model!r}, url={self.url!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return min(self.backoff * 2**attempt, self.max_backoff)

    def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one request with retries; return the decoded JSON response.

        Raises:
            ServerError: A non-retryable status, or still failing after ``max_retries`` retries.
        """
        body = json.dumps(payload).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            req = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return dict(json.loads(resp.read().decode()))
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode(errors="replace")
                last = f"HTTP {exc.code} {detail}".strip()
                if exc.code not in RETRY_STATUS:
                    raise ServerError(f"{self.url}: {last}") from None
                retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except json.JSONDecodeError as exc:
                raise ServerError(f"{self.url}: response is not JSON ({exc})") from None
            if attempt < self.max_retries:
                self.sleep(self._delay(attempt, retry_after))
        raise ServerError(f"{self.url}: failed after {self.max_retries + 1} attempts; last error: {last}")

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*msgs, {"role": "user", "content": prompt}]

    def _map(self, fn: Callable[[str], Any], prompts: Sequence[str]) -> list[Any]:
        if self.concurrency <= 1 or len(prompts) <= 1:
            return [fn(p) for p in prompts]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, prompts))

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy (temperature 0) answers to N user messages."""

        def one(prompt: str) -> str:
            resp = self.post(
                {
                    "model": self.model,
                    "messages": self._messages(prompt),
                    "max_tokens": max_new_tokens,
                    "temperature": 0,
                }
            )
            try:
                return str(resp["choices"][0]["message"]["content"] or "").strip()
            except (KeyError, IndexError, TypeError) as exc:
                raise ServerError(f"{self.url}: unexpected response shape: {str(resp)[:200]}") from exc

        return self._map(one, prompts)

    def score_options(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> np.ndarray:
        """Log-probability [N, C] of each (single-token) option as the first answer token.

        Raises:
            ScoringUnsupported: The server returned no ``logprobs``.
        """
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")

        def one(prompt: str) -> list[tuple[str, float]]:
            payload = {
                "model": self.model,
                "messages": self._messages(prompt),
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": self.top_logprobs,
            }
            resp = self.post(payload)
            try:
                top = resp["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                return [(str(t["token"]), float(t["logprob"])) for t in top]
            except (KeyError, IndexError, TypeError) as exc:
                raise ScoringUnsupported(
                    f"{self.url} returned no logprobs/top_logprobs for model {self.model!r}: label scoring needs "
                    "them (use answer_mode='generate' with this server)"
                ) from exc

        tops = self._map(one, prompts)
        return np.array([option_logprobs(top, opts) for top, opts in zip(tops, options, strict=True)])


def option_logprobs(top: Sequence[tuple[str, float]], options: Sequence[str]) -> list[float]:
    """Log-probability of each option from one token's top alternatives (see the module docstring)."""
    if not top:
        raise ScoringUnsupported("empty top_logprobs")
    floor = min(lp for _, lp in top) - math.log(2)
    out = []
    for opt in options:
        key = opt.strip().lower()
        hits = [lp for tok, lp in top if tok.strip().lower() == key and key]
        out.append(float(np.logaddexp.reduce(hits)) if hits else floor)
    return out
