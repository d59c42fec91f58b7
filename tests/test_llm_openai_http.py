"""OpenAIChatLLM against a scripted local http.server: retries, Retry-After, errors, logprob scoring."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from casceq.systems.llm import make_llm
from casceq.systems.llm.openai_http import (
    OpenAIChatLLM,
    ScoringUnsupported,
    ServerError,
    option_logprobs,
    retry_after_seconds,
)


def _answer(text: str, top: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
    if top is not None:
        choice["logprobs"] = {
            "content": [
                {
                    "token": top[0][0],
                    "logprob": top[0][1],
                    "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top],
                }
            ]
        }
    return {"choices": [choice]}


class Script:
    """Responses served in order (the last one repeats); every request is recorded."""

    def __init__(self, responses: list[tuple[int, dict[str, str], Any]]) -> None:
        self.responses = responses
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()

    def next(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append((headers, body))
            i = min(len(self.requests) - 1, len(self.responses) - 1)
            return self.responses[i]


@pytest.fixture
def serve() -> Iterator[Any]:
    servers = []

    def start(script: Script) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, payload = script.next(dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_retries_429_then_500_then_answers(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-123")
    script = Script(
        [
            (429, {"Retry-After": "7"}, {"error": "slow down"}),
            (500, {}, {"error": "boom"}),
            (200, {}, _answer(" positive ")),
        ]
    )
    waits: list[float] = []
    llm = OpenAIChatLLM(
        "m", serve(script), api_key_env="TEST_LLM_KEY", allow_http=True, backoff=0.5, sleep=waits.append
    )
    assert llm.generate(["Is it good?"], 4) == ["positive"]
    assert len(script.requests) == 3
    assert waits == [7.0, 1.0]  # Retry-After honoured, then exponential backoff 0.5 * 2**1
    headers, body = script.requests[-1]
    assert headers["Authorization"] == "Bearer sk-secret-123"
    assert body["messages"][-1] == {"role": "user", "content": "Is it good?"} and body["max_tokens"] == 4
    assert body["temperature"] == 0
    assert "sk-secret" not in repr(llm) and "sk-secret" not in json.dumps(vars(llm), default=str)


def test_gives_up_after_max_retries_with_clear_error(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-123")
    script = Script([(503, {}, {"error": "overloaded"})])
    waits: list[float] = []
    llm = OpenAIChatLLM(
        "m",
        serve(script),
        api_key_env="TEST_LLM_KEY",
        allow_http=True,
        max_retries=3,
        backoff=1,
        max_backoff=3,
        sleep=waits.append,
    )
    with pytest.raises(ServerError, match=r"failed after 4 attempts.*HTTP 503") as info:
        llm.generate(["x"], 2)
    assert len(script.requests) == 4
    assert waits == [1, 2, 3]  # capped at max_backoff
    assert "sk-secret" not in str(info.value)


def test_client_error_is_not_retried(serve: Any) -> None:
    script = Script([(401, {}, {"error": "bad key"})])
    llm = OpenAIChatLLM("m", serve(script), api_key_env="UNSET_VAR_FOR_TEST", sleep=lambda s: None)
    with pytest.raises(ServerError, match="HTTP 401"):
        llm.generate(["x"], 2)
    assert len(script.requests) == 1
    assert "Authorization" not in script.requests[0][0]


def test_connection_refused_is_retried_then_raises() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    waits: list[float] = []
    llm = OpenAIChatLLM("m", f"http://127.0.0.1:{port}/v1", max_retries=2, timeout=2, sleep=waits.append)
    with pytest.raises(ServerError, match="3 attempts"):
        llm.generate(["x"], 2)
    assert len(waits) == 2


def test_score_options_from_top_logprobs(serve: Any) -> None:
    top = [("positive", -0.2), (" Positive", -2.0), ("negative", -1.9), ("neutral", -4.0)]
    script = Script([(200, {}, _answer("positive", top))])
    llm = OpenAIChatLLM("m", serve(script), sleep=lambda s: None, concurrency=2)
    scores = llm.score_options(["a", "b"], [["negative", "positive", "sarcastic"]] * 2)
    expected_pos = float(np.logaddexp(-0.2, -2.0))
    np.testing.assert_allclose(scores[0], [-1.9, expected_pos, -4.0 - np.log(2)])
    assert scores.shape == (2, 3)
    body = script.requests[0][1]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1


def test_score_options_without_logprobs_raises(serve: Any) -> None:
    llm = OpenAIChatLLM("m", serve(Script([(200, {}, _answer("positive"))])), sleep=lambda s: None)
    with pytest.raises(ScoringUnsupported, match="logprobs"):
        llm.score_options(["a"], [["negative", "positive"]])


def test_option_logprobs_requires_entries() -> None:
    with pytest.raises(ScoringUnsupported):
        option_logprobs([], ["a"])


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_make_llm_openai_spec(serve: Any) -> None:
    url = serve(Script([(200, {}, _answer("World"))]))
    llm = make_llm(f"openai:org/Some-Model@{url}", sleep=lambda s: None)
    from casceq.systems.base import LLMBackend

    assert isinstance(llm, OpenAIChatLLM) and isinstance(llm, LLMBackend) and llm.backbone == "some-model"
    assert llm.generate(["topic?"], 3) == ["World"]
