"""OpenAI-compatible HTTP backend (vLLM servers, cloud APIs), for the LLM and the SLM side.

Sends ``/v1/chat/completions`` requests concurrently (``max_concurrency`` threads), greedy
(temperature 0) unless sampling is asked for. The API key is read from the environment
variable named in config (``api_key_env``), never from a file or the config itself.

As an SLM, an endpoint provides every stat that needs no hidden state (``NO_STATS`` in
``jobs/backends/__init__.py`` is what it lacks; the config refuses probes on it):

- ``generate(with_stats=True)`` asks for ``logprobs: true, top_logprobs: k`` (k =
  ``top_logprobs``, default 20, vLLM's default ``--max-logprobs``). ``token_logprobs`` is the
  server's log p of each generated token, exact. ``token_texts`` are the server's token strings
  (there are no ids over HTTP); ``hidden`` is None.
- ``token_entropy`` is **approximated** from the top-k log-probs (:func:`topk_entropy`): the k
  listed tokens plus one tail bucket holding the unlisted mass r = 1 - sum(top-k p),
  ``H_k = -sum_i p_i log p_i - r log r``. Every unlisted token has p_j <= r, so H_k never exceeds
  the full-vocabulary entropy H, and H - H_k <= r log(V - k) (tail spread evenly over the other
  V - k tokens): the approximation is a lower bound, tight when the top k hold nearly all the mass
  (r = 0 gives H exactly). Measured on SmolLM2-135M, k = 20: see README, "SLMs on an
  OpenAI-compatible server".
- ``true_false_prob``: one 1-token completion per prompt with top-k log-probs of that next token;
  p(True) = P_T / (P_T + P_F), P_T the summed probability of the listed tokens that are the whole
  word True / true / TRUE (with or without a leading space), P_F likewise for False. A word with no
  listed token gets the most it can have, min(smallest listed p, r) (the tail floor), so a word
  missing from the top k counts as unlikely, not impossible; both missing gives 0.5.
- Samples (Jaccard) use ``n`` per request with a seed per prompt, its row seed (from the unit seed
  and the sample id, ``jobs.stages.base.row_seed``; vLLM and OpenAI honour both).

Log-probs are whatever the server reports: vLLM's default is the raw model distribution (before
temperature and penalties), which is what the hf backend records too.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import requests

from jobs.backends.base import ContinuationScore, Generation, Messages, ModelConf

#: Words whose next-token probability p(True) sums (compared after stripping a leading space).
TRUE_WORDS = ("True", "true", "TRUE")
FALSE_WORDS = ("False", "false", "FALSE")


class OpenAIBackendError(RuntimeError):
    pass


def topk_entropy(top_logprobs: list[float]) -> float:
    """Entropy (nats) of a next-token distribution known only through its top-k log-probs.

    The k listed probabilities plus one bucket for the rest, r = max(0, 1 - sum p):
    ``-sum p log p - r log r``. A lower bound on the full entropy H, with
    ``H - H_k <= r log(V - k)`` for a vocabulary of V tokens (see the module docstring).
    """
    p = np.exp(np.asarray(top_logprobs, dtype=np.float64))
    h = float(-(p * np.log(np.clip(p, 1e-300, None))).sum())
    r = 1.0 - float(p.sum())
    return h - r * math.log(r) if r > 1e-12 else h


def tail_mass(top_logprobs: list[float]) -> float:
    """Probability not covered by the listed tokens, max(0, 1 - sum p)."""
    return max(0.0, 1.0 - float(np.exp(np.asarray(top_logprobs, dtype=np.float64)).sum()))


def _word(token: str) -> str:
    # one leading space (or the byte-level / SentencePiece space marks some servers leave in)
    return token[1:] if token[:1] in (" ", "\u0120", "\u2581") else token


def true_false_from_top(top: list[dict]) -> float:
    """p(True) normalized over {True, False} from one position's ``top_logprobs`` entries.

    top: ``[{"token": str, "logprob": float}, ...]`` as the OpenAI API returns them. Tokens that
    are the whole word (``TRUE_WORDS`` / ``FALSE_WORDS``, leading space allowed) are summed; a word
    with none listed gets the tail floor min(smallest listed p, unlisted mass).
    """
    if not top:
        return 0.5
    lps = [float(t["logprob"]) for t in top]
    floor = min(math.exp(min(lps)), tail_mass(lps))
    p_t = sum(math.exp(float(t["logprob"])) for t in top if _word(t["token"]) in TRUE_WORDS)
    p_f = sum(math.exp(float(t["logprob"])) for t in top if _word(t["token"]) in FALSE_WORDS)
    p_t, p_f = p_t or floor, p_f or floor
    return 0.5 if p_t + p_f <= 0 else p_t / (p_t + p_f)


def answer_entries(entries: list[dict], content: str, finish_reason: str | None) -> list[dict]:
    """The ``logprobs.content`` entries without a trailing stop token (EOS) the server reported.

    vLLM lists the EOS token that ended a generation; the hf backend's stats exclude it. It is
    recognised as a last entry, with ``finish_reason == "stop"``, that adds nothing to the text:
    its string is empty, or the other entries alone already spell the content (whitespace aside)
    while all of them do not, or it looks like a special token (``<|im_end|>``, ``</s>``) the text lacks.
    """
    if finish_reason != "stop" or not entries:
        return entries
    last = entries[-1]["token"]
    head = "".join(t["token"] for t in entries[:-1]).strip()
    special = last.startswith("<") and last.endswith(">") and last not in content  # <|im_end|>, </s>
    if last == "" or special or (head == content.strip() and (head + last).strip() != head):
        return entries[:-1]
    return entries


class OpenAIBackend:
    def __init__(
        self,
        base_url: str,
        model_name: str,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        top_logprobs: int = 20,
    ):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.identity = f"openai:{self.base_url}:{model_name}"
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self.max_concurrency = max(1, int(max_concurrency))
        self.top_logprobs = int(top_logprobs)
        if self.top_logprobs < 1:  # the entropy and p(True) are read from these
            raise OpenAIBackendError(
                f"top_logprobs={top_logprobs} (of {model_name}) must be >= 1; vLLM allows up "
                f"to its --max-logprobs (default 20)"
            )
        self.session = requests.Session()
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise OpenAIBackendError(f"environment variable {api_key_env} (api_key_env of {model_name}) is not set")
            self.session.headers["Authorization"] = f"Bearer {key}"

    def render(self, messages: Messages) -> str:
        # the chat template is applied by the server; this is only the record of what was sent
        return "\n".join(f"<{m['role']}> {m['content']}" for m in messages)

    def token_strings(self, ids):
        return []  # no ids over HTTP: generations carry token_texts instead

    def _post(self, body: dict, path: str = "/chat/completions") -> dict:
        last = None
        for attempt in range(self.max_attempts):
            try:
                r = self.session.post(f"{self.base_url}{path}", json=body, timeout=self.timeout_s)
                if r.status_code in (429, 500, 502, 503, 504):
                    last = OpenAIBackendError(f"HTTP {r.status_code}: {r.text[:200]}")
                    time.sleep(min(8.0, 0.5 * 2**attempt))
                    continue
                if r.status_code != 200:
                    raise OpenAIBackendError(f"{self.base_url} answered HTTP {r.status_code}: {r.text[:300]}")
                return r.json()
            except requests.RequestException as e:
                last = e
                time.sleep(min(8.0, 0.5 * 2**attempt))
        raise OpenAIBackendError(f"{self.base_url}: giving up after {self.max_attempts} attempts: {last}")

    def _one(
        self,
        messages: Messages,
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        n: int,
        seed: int,
        with_stats: bool,
    ) -> list[Generation]:
        body = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "n": n,
            "temperature": temperature if do_sample else 0.0,
            "seed": seed,
        }
        if with_stats:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        t0 = time.perf_counter()
        data = self._post(body)
        dt = time.perf_counter() - t0
        usage = data.get("usage") or {}
        out = []
        for ch in data["choices"][:n]:
            text = (ch.get("message") or {}).get("content") or ""
            g = Generation(
                text=text.strip(),
                n_prompt_tokens=int(usage.get("prompt_tokens") or 0),
                n_new_tokens=int(usage.get("completion_tokens") or 0) // max(1, n),
                latency_s=dt,
            )
            if with_stats:
                lps = (ch.get("logprobs") or {}).get("content")
                if lps is None:
                    raise OpenAIBackendError(
                        f"{self.base_url} ({self.model_name}) returned no logprobs; "
                        f"an SLM endpoint must support logprobs / top_logprobs (vLLM does)"
                    )
                lps = answer_entries(lps, text, ch.get("finish_reason"))
                g.n_new_tokens = len(lps)
                g.token_texts = [t["token"] for t in lps]
                g.token_logprobs = np.asarray([t["logprob"] for t in lps], dtype=np.float32)
                g.token_entropy = np.asarray(
                    [topk_entropy([x["logprob"] for x in t.get("top_logprobs") or []]) for t in lps], dtype=np.float32
                )
            out.append(g)
        return out

    def generate(
        self,
        prompts: list[Messages],
        *,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        num_return_sequences: int = 1,
        seed: int = 0,
        with_stats: bool = False,
        row_seeds: list[int] | None = None,
    ) -> list[Generation]:
        """One request per prompt (``n`` = num_return_sequences). Its ``seed``: the prompt's row seed
        (``row_seeds[i * n]``, the seed of its first draw, from the unit seed and the sample id:
        the server's draws for a request depend on that request alone), else seed + prompt index.

        with_stats: also token log-probs (exact), approximate entropies and token strings.
        """
        n = num_return_sequences
        if row_seeds is not None and len(row_seeds) != len(prompts) * n:
            raise ValueError(
                f"row_seeds has {len(row_seeds)} seeds; expected {len(prompts)} prompts x {n} = {len(prompts) * n}"
            )
        seeds = [int(row_seeds[i * n]) if row_seeds is not None else seed + i for i in range(len(prompts))]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            futs = [
                pool.submit(self._one, m, max_new_tokens, do_sample, temperature, n, seeds[i], with_stats)
                for i, m in enumerate(prompts)
            ]
            return [g for f in futs for g in f.result()]

    def _tf_one(self, messages: Messages) -> float:
        data = self._post(
            {
                "model": self.model_name,
                "messages": messages,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": self.top_logprobs,
            }
        )
        content = ((data["choices"][0].get("logprobs") or {}).get("content")) or []
        if not content:
            raise OpenAIBackendError(
                f"{self.base_url} ({self.model_name}) returned no logprobs for p(True); "
                f"the endpoint must support logprobs / top_logprobs (vLLM does)"
            )
        return true_false_from_top(content[0].get("top_logprobs") or [])

    def true_false_prob(self, prompts: list[Messages]) -> np.ndarray:
        """p(True) over {True, False} for the next token after each prompt (see module docstring)."""
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return np.asarray(list(pool.map(self._tf_one, prompts)), dtype=np.float64)

    # ------------------------------------------------------------- cloze scoring
    def _score_one(self, context: str, continuation: str) -> ContinuationScore:
        """One log-likelihood request through ``/v1/completions`` with ``echo`` (module docstring)."""
        n_spaces = len(context) - len(context.rstrip())  # lm-eval's _encode_pair
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        prompt = context + continuation
        data = self._post(
            {
                "model": self.model_name,
                "prompt": prompt,
                "echo": True,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": self.top_logprobs,
                "seed": 1234,
            },
            path="/completions",
        )
        lp = (data["choices"][0].get("logprobs")) or {}
        offsets, toks = lp.get("text_offset"), lp.get("tokens")
        if not offsets or not toks or lp.get("token_logprobs") is None:
            raise OpenAIBackendError(
                f"{self.base_url} ({self.model_name}) returned no echoed prompt log-probs; cloze scoring "
                f"needs /v1/completions with echo and logprobs (vLLM and the project's test server have it)"
            )
        # the continuation's tokens: those starting inside it (a generated token starts at len(prompt))
        idx = [j for j, o in enumerate(offsets) if len(context) <= int(o) < len(prompt)]
        if not idx or idx[0] == 0:
            raise OpenAIBackendError(
                f"{self.base_url}: no scorable continuation token for {continuation!r} after a "
                f"{len(context)}-character context (offsets {offsets[:8]}...)"
            )
        lps = [float(lp["token_logprobs"][j]) for j in idx]
        tops = lp.get("top_logprobs") or [None] * len(toks)
        ent = [topk_entropy(list((tops[j] or {}).values())) if tops[j] else float("nan") for j in idx]
        return ContinuationScore(
            token_logprobs=np.asarray(lps, dtype=np.float64),
            token_entropy=np.asarray(ent, dtype=np.float64),
            token_texts=[toks[j] for j in idx],
            hidden=None,
        )

    def continuation_logprobs(self, questions: list[list[tuple[str, str]]]) -> list[list[ContinuationScore]]:
        """Cloze scoring over HTTP, as lm-evaluation-harness's ``local-completions`` model asks for
        log-likelihoods (``lm_eval/models/openai_completions.py``, ``LocalCompletionsAPI``): one
        ``/v1/completions`` request per (context, continuation) with the whole text as ``prompt``,
        ``echo: true``, ``logprobs``, ``temperature: 0`` and ``max_tokens: 1`` (the harness's value;
        the one generated token is not read). The continuation's tokens are the echoed tokens whose
        ``text_offset`` falls inside it (the harness counts them with its own tokenizer instead; an
        endpoint has none here). ``token_entropy`` is the top-k approximation (``topk_entropy``);
        ``hidden`` is None."""
        flat = [(qi, c, x) for qi, reqs in enumerate(questions) for c, x in reqs]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            scored = list(pool.map(lambda r: self._score_one(r[1], r[2]), flat))
        out: list[list[ContinuationScore]] = [[] for _ in questions]
        for (qi, _c, _x), sc in zip(flat, scored):
            out[qi].append(sc)
        return out


@dataclass(frozen=True, eq=False)
class OpenAIConf(ModelConf):
    """An OpenAI-compatible endpoint (``backend: openai``): vLLM, cloud APIs; LLM or SLM. Its key is
    read from the environment variable ``api_key_env`` names, never from the config."""

    factory: ClassVar[str] = "jobs.backends.openai_http:from_conf"
    no_stats: ClassVar[tuple[str, ...]] = ("hidden_state",)  # an endpoint returns no hidden states
    identity_fields: ClassVar[tuple[str, ...]] = ("top_logprobs",)  # k sets the entropy approximation
    priced_as: ClassVar[str] = "api"

    base_url: str | None = None
    model_name: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = 8
    request_timeout_s: float = 120.0
    top_logprobs: int = 20  # as an SLM: log-probs listed per token (entropy, p(True)); vLLM allows <= 20

    def check(self, where: str) -> None:
        if not (self.base_url and self.model_name):
            raise ValueError(f"{where}: backend openai needs base_url and model_name")


def from_conf(m: OpenAIConf) -> OpenAIBackend:
    return OpenAIBackend(
        base_url=m.base_url,
        model_name=m.model_name,
        api_key_env=m.api_key_env,
        max_concurrency=m.max_concurrency,
        timeout_s=m.request_timeout_s,
        top_logprobs=m.top_logprobs,
    )
