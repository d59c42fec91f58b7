"""An OpenAI-compatible chat-completions server as an ``LLMBackend`` (vLLM serve, llama.cpp server, TGI, OpenAI).

Standard library only (``urllib``). Requests are retried on 429, 5xx, timeouts and connection errors with
exponential backoff, honouring ``Retry-After``; other 4xx fail at once.

Keys: the API key is read from the environment variable named by ``api_key_env`` at each request; it is never
stored on the object, and every error message is passed through ``casceq.redact`` (a server that echoes the
``Authorization`` header cannot put it into a log). Without ``api_key_env``, ``$OPENAI_API_KEY`` is sent only to
the official ``https://api.openai.com``; any other server gets no key unless the user names the variable for
it. A key goes over plain ``http`` only with ``allow_http=True``, and redirects are not followed (the header
would go to another host).

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
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from casceq.errors import CasceqError, InputError
from casceq.redact import redact, register_secret

OFFICIAL_HOST = "api.openai.com"
DEFAULT_KEY_VARIABLE = "OPENAI_API_KEY"
"""Sent without ``api_key_env`` only to ``https://`` + :data:`OFFICIAL_HOST`."""

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(CasceqError):
    """The server refused a request, or kept failing after every retry."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would send the ``Authorization`` header to a host nobody named."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirect())


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
        api_key_env: Name of the environment variable holding the key (default: ``OPENAI_API_KEY`` for
            ``https://api.openai.com`` only, no key for any other server; a variable that is unset: no
            ``Authorization`` header).
        allow_http: Send the key over plain ``http`` (refused by default).
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
        api_key_env: str | None = None,
        allow_http: bool = False,
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
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"openai base_url must be an http(s) URL, got {redact(base_url)!r}")
        if parts.username or parts.password:
            raise InputError(
                "openai base_url must not hold credentials: name the key's variable with api_key_env"
            )
        if api_key_env is None and parts.scheme == "https" and parts.hostname == OFFICIAL_HOST:
            api_key_env = DEFAULT_KEY_VARIABLE
        self.scheme, self.host, self.allow_http = parts.scheme, parts.hostname, bool(allow_http)
        self.api_key_env, self.timeout, self.max_retries = api_key_env, timeout, max_retries
        self.backoff, self.max_backoff, self.sleep = backoff, max_backoff, sleep
        self.system_prompt, self.top_logprobs, self.concurrency = system_prompt, top_logprobs, concurrency
        self.backbone = backbone or model.rsplit("/", 1)[-1].lower()

    def __repr__(self) -> str:
        return f"OpenAIChatLLM(model={self.model!r}, url={self.url!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            register_secret(key)
            if self.scheme != "https" and not self.allow_http:
                raise InputError(
                    f"refusing to send the key in ${self.api_key_env} to {self.host} over plain http: use an "
                    "https base_url, or set allow_http = true in the system's settings"
                )
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
                with _OPENER.open(req, timeout=self.timeout) as resp:
                    return dict(json.loads(resp.read().decode()))
            except urllib.error.HTTPError as exc:
                detail = redact(exc.read()[:300].decode(errors="replace"))
                last = f"HTTP {exc.code} {detail}".strip()
                if 300 <= exc.code < 400:
                    last += " (redirects are not followed: set base_url to the final address)"
                if exc.code not in RETRY_STATUS:
                    raise ServerError(f"{self.url}: {last}") from None
                retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = redact(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
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
                raise ServerError(
                    f"{self.url}: unexpected response shape: {redact(str(resp)[:200])}"
                ) from exc

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
