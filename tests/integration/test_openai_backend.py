"""The OpenAI-compatible HTTP backend against a small OpenAI-compatible server started here on
127.0.0.1 that answers with the real SmolLM2: same answers as the model run in-process."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import requests
import uvicorn

from jobs import prompts
from jobs.backends import make_backend
from jobs.backends.openai_http import OpenAIBackend, OpenAIBackendError
from jobs.datasets import load_samples
from scripts.openai_server import make_app
from tests.helpers import SMOL

pytestmark = pytest.mark.integration

CONF = {"name": "smollm2-test", "backend": "hf", **SMOL, "torch_threads": 1}


@pytest.fixture(scope="module")
def served():
    backend = make_backend(CONF)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(make_app(backend, "smollm2"), host="127.0.0.1", port=port, log_level="warning")
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            if requests.get(url + "/models", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield backend, url
    server.should_exit = True
    th.join(10)


def test_http_backend_matches_in_process_model(served):
    backend, url = served
    samples = load_samples("strategyqa", limit=3, seed=0).samples
    msgs = [prompts.answer_messages(s) for s in samples]
    # one batch in-process, one request per prompt over HTTP: a row's answer does not depend on its batch
    local = [g.text for g in backend.generate(msgs, max_new_tokens=12)]
    remote = OpenAIBackend(url, "smollm2", max_concurrency=2).generate(msgs, max_new_tokens=12, with_stats=True)
    assert [g.text for g in remote] == local
    assert all(g.token_logprobs is not None and len(g.token_logprobs) == g.n_new_tokens for g in remote)
    assert all(np.all(g.token_logprobs <= 0) for g in remote)


def test_api_key_comes_from_the_named_environment_variable(served, monkeypatch):
    _, url = served
    monkeypatch.delenv("UQROUTE_TEST_KEY", raising=False)
    with pytest.raises(OpenAIBackendError, match="UQROUTE_TEST_KEY"):
        OpenAIBackend(url, "smollm2", api_key_env="UQROUTE_TEST_KEY")
    monkeypatch.setenv("UQROUTE_TEST_KEY", "secret")
    b = OpenAIBackend(url, "smollm2", api_key_env="UQROUTE_TEST_KEY")
    assert b.session.headers["Authorization"] == "Bearer secret"


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "x", max_attempts=2)
    with pytest.raises(OpenAIBackendError, match="giving up after 2 attempts"):
        b.generate([[{"role": "user", "content": "hi"}]], max_new_tokens=2)
