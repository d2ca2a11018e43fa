"""OpenAI-compatible HTTP backend (vLLM servers, cloud APIs) for the LLM side.

Sends ``/v1/chat/completions`` requests concurrently (``max_concurrency`` threads), greedy
(temperature 0) unless sampling is asked for. The API key is read from the environment
variable named in config (``api_key_env``), never from a file or the config itself.
Token log-probs are requested and kept when the server returns them (vLLM does).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from jobs.backends.base import Generation, Messages


class OpenAIBackendError(RuntimeError):
    pass


class OpenAIBackend:
    def __init__(self, base_url: str, model_name: str, api_key_env: str | None = None, max_concurrency: int = 8,
                 timeout_s: float = 120.0, max_attempts: int = 4):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.identity = f"openai:{self.base_url}:{model_name}"
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self.max_concurrency = max(1, int(max_concurrency))
        self.session = requests.Session()
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise OpenAIBackendError(f"environment variable {api_key_env} (api_key_env of {model_name}) is not set")
            self.session.headers["Authorization"] = f"Bearer {key}"

    def render(self, messages: Messages) -> str:
        return "\n".join(f"<{m['role']}> {m['content']}" for m in messages)

    def token_strings(self, ids):
        return []

    def _post(self, body: dict) -> dict:
        last = None
        for attempt in range(self.max_attempts):
            try:
                r = self.session.post(f"{self.base_url}/chat/completions", json=body, timeout=self.timeout_s)
                if r.status_code in (429, 500, 502, 503, 504):
                    last = OpenAIBackendError(f"HTTP {r.status_code}: {r.text[:200]}")
                    time.sleep(min(8.0, 0.5 * 2 ** attempt))
                    continue
                if r.status_code != 200:
                    raise OpenAIBackendError(f"{self.base_url} answered HTTP {r.status_code}: {r.text[:300]}")
                return r.json()
            except requests.RequestException as e:
                last = e
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
        raise OpenAIBackendError(f"{self.base_url}: giving up after {self.max_attempts} attempts: {last}")

    def _one(self, messages: Messages, max_new_tokens: int, do_sample: bool, temperature: float, n: int,
             seed: int) -> list[Generation]:
        body = {"model": self.model_name, "messages": messages, "max_tokens": max_new_tokens, "n": n,
                "temperature": temperature if do_sample else 0.0, "seed": seed, "logprobs": True}
        t0 = time.perf_counter()
        data = self._post(body)
        dt = time.perf_counter() - t0
        usage = data.get("usage") or {}
        out = []
        for ch in data["choices"][:n]:
            text = (ch.get("message") or {}).get("content") or ""
            lps = ((ch.get("logprobs") or {}).get("content")) or []
            out.append(Generation(text=text.strip(), n_prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                  n_new_tokens=len(lps) or int(usage.get("completion_tokens") or 0) // max(1, n),
                                  token_logprobs=np.asarray([t["logprob"] for t in lps], dtype=np.float32)
                                  if lps else None, latency_s=dt))
        return out

    def generate(self, prompts: list[Messages], *, max_new_tokens: int, do_sample: bool = False,
                 temperature: float = 1.0, num_return_sequences: int = 1, seed: int = 0,
                 with_stats: bool = False) -> list[Generation]:
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            futs = [pool.submit(self._one, m, max_new_tokens, do_sample, temperature, num_return_sequences, seed + i)
                    for i, m in enumerate(prompts)]
            return [g for f in futs for g in f.result()]

    def true_false_prob(self, prompts: list[Messages]) -> np.ndarray:
        raise NotImplementedError("p(True) needs next-token probabilities; use an hf backend for the SLM")


def from_conf(m: dict) -> OpenAIBackend:
    return OpenAIBackend(base_url=m["base_url"], model_name=m["model_name"], api_key_env=m.get("api_key_env"),
                         max_concurrency=m.get("max_concurrency", 8), timeout_s=m.get("request_timeout_s", 120.0))
