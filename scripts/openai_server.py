"""A small OpenAI-compatible server over a local transformers model, answering as vLLM does.

For tests of the HTTP backend against a real model, and for serving an offline model on one
machine: ``python -m scripts.openai_server --model-conf conf/slm/x.yaml --port 8011``.
It binds 127.0.0.1 only (put an SSH tunnel or a proxy in front to reach it from elsewhere).

- ``POST /v1/chat/completions``: ``messages``, ``max_tokens``, ``temperature`` (0 = greedy;
  OpenAI's default 1), ``n``, ``seed``, ``stop``, ``logprobs``, ``top_logprobs`` (0..20, vLLM's
  default ``--max-logprobs``). Text comes from the backend's own ``generate``, so it equals the
  in-process backend's for the same prompt. With ``logprobs: true`` each choice has
  ``logprobs.content[j] = {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``.
- ``POST /v1/completions``: a raw ``prompt`` (no chat template), ``logprobs: k`` in the legacy
  form ``{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}``. ``echo: true``
  puts the prompt's own tokens first (the first one's log p and top list null, as vLLM and OpenAI
  answer; ``text_offset`` from the tokenizer's offsets): the cloze scoring of an HTTP backend
  (``OpenAIBackend.continuation_logprobs``, as lm-evaluation-harness ``local-completions``).
  ``max_tokens: 0`` generates nothing.
- ``GET /v1/models``.

Log-probs are the raw model distribution (before temperature), as vLLM reports by default,
computed by one teacher-forced pass over prompt + generated tokens. A generation that ended on
EOS reports the EOS token as its last ``logprobs`` entry (vLLM does too; the text leaves it out).
``stop`` strings cut the text before the first match; the tokens are kept up to the one that
completes it (``finish_reason: "stop"``).
"""

from __future__ import annotations

import argparse
import threading
import time

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

MAX_LOGPROBS = 20  # vLLM's default --max-logprobs
HOST = "127.0.0.1"


class ChatRequest(BaseModel):
    model: str
    messages: list[dict]
    max_tokens: int = 64
    temperature: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class CompletionRequest(BaseModel):
    model: str
    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: int | None = None
    echo: bool = False


def _error(msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"object": "error", "message": msg, "type": "BadRequestError", "code": status}, status_code=status
    )


class _Scorer:
    """Token strings and raw log-probs of a continuation under the backend's model (torch here)."""

    def __init__(self, backend):
        import torch

        self.torch, self.backend = torch, backend
        self.tok, self.model = backend.tok, backend.model
        self.device = next(self.model.parameters()).device
        eos = set()
        for src in (self.model.generation_config.eos_token_id, self.tok.eos_token_id):
            if src is not None:
                eos.update(src if isinstance(src, (list, tuple)) else [src])
        self.eos_ids = sorted(eos)

    def prompt_ids(self, text: str, special: bool) -> list[int]:
        return self.tok(text, add_special_tokens=special)["input_ids"]

    def chat_prompt_ids(self, messages) -> list[int]:
        # exactly how HFBackend encodes a chat prompt
        return self.prompt_ids(self.backend.render(messages), not self.backend.has_chat_template)

    def token(self, i: int) -> str:
        return self.tok.decode([i])

    def score(self, prompt: list[int], new: list[int], k: int, add_eos: bool):
        """([(id, logprob)] per new token, [[(id, logprob)] top-k per position]).

        add_eos: the generation ended on EOS; append the most likely EOS id at the next position.
        """
        torch = self.torch
        if not new and not add_eos:
            return [], []
        with torch.inference_mode():
            ids = torch.tensor([prompt + new], device=self.device)
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1 :].float()
            logp = torch.log_softmax(logits, -1)  # position j predicts new[j]; the last one predicts EOS
        chosen = [(t, float(logp[j, t])) for j, t in enumerate(new)]
        if add_eos and self.eos_ids:
            e = max(self.eos_ids, key=lambda i: float(logp[len(new), i]))
            chosen.append((e, float(logp[len(new), e])))
        top = []
        if k:
            vals, idx = logp[: len(chosen)].topk(k, dim=-1)
            top = [list(zip(i.tolist(), v.tolist())) for i, v in zip(idx, vals)]
        return chosen, top

    def echo(self, text: str, k: int):
        """The prompt's own tokens: (ids, [None] + log p of each later token given those before,
        [None] + its top-k [(id, logprob)], character offsets), one teacher-forced pass."""
        torch = self.torch
        enc = self.tok(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], [int(a) for a, _b in enc["offset_mapping"]]
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1)
        lps = [None] + [float(logp[j - 1, t]) for j, t in enumerate(ids) if j > 0]
        top: list = [None]
        if k:
            vals, idx = logp.topk(k, dim=-1)
            top += [list(zip(i.tolist(), v.tolist())) for i, v in zip(idx, vals)]
        else:
            top += [[] for _ in ids[1:]]
        return ids, lps, top, offsets

    def generate_raw(self, prompt: list[int], max_tokens: int, temperature: float, n: int, seed: int):
        """Token ids of n continuations of a raw prompt, EOS excluded, and whether each ended on EOS."""
        torch = self.torch
        if max_tokens == 0:
            return [([], False) for _ in range(n)]
        torch.manual_seed(seed)
        kw = dict(
            max_new_tokens=max_tokens,
            num_return_sequences=n,
            pad_token_id=self.tok.pad_token_id,
            eos_token_id=self.eos_ids or None,
        )
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            kw.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        with torch.inference_mode():
            out = self.model.generate(input_ids=torch.tensor([prompt], device=self.device), **kw)
        res = []
        for row in out[:, len(prompt) :].tolist():
            ids = []
            for t in row:
                if t in self.eos_ids or t == self.tok.pad_token_id:
                    break
                ids.append(t)
            res.append((ids, len(ids) < max_tokens))
        return res


def _cut_at_stop(scorer: _Scorer, ids: list[int], text: str, stop) -> tuple[list[int], str, bool]:
    """Cut at the first stop string: text before it, tokens up to the one that completes it."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return ids, text, False
    pos, s = min(hits)
    for j in range(1, len(ids) + 1):
        if scorer.tok.decode(ids[:j], skip_special_tokens=True).lstrip().find(s) >= 0:
            return ids[:j], text[:pos], True
    return ids, text[:pos], True


def make_app(backend, model_name: str, api_key: str | None = None) -> FastAPI:
    """api_key: when given, every request must carry ``Authorization: Bearer <api_key>`` (401 otherwise)."""
    app = FastAPI()
    lock = threading.Lock()  # one model, one generation at a time
    scorer = _Scorer(backend)

    if api_key:
        from fastapi.responses import JSONResponse

        @app.middleware("http")
        async def require_key(request, call_next):
            if request.headers.get("authorization") != f"Bearer {api_key}":
                return JSONResponse(
                    {"error": {"message": "invalid API key", "type": "invalid_request_error"}}, status_code=401
                )
            return await call_next(request)

    def entry(i: int, lp: float) -> dict:
        t = scorer.token(i)
        return {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):
        k = req.top_logprobs or 0
        if k and not req.logprobs:
            return _error("top_logprobs needs logprobs: true")
        if not 0 <= k <= MAX_LOGPROBS:
            return _error(f"top_logprobs={k}: must be in 0..{MAX_LOGPROBS} (vLLM's --max-logprobs)")
        with lock:
            t0 = time.perf_counter()
            gens = backend.generate(
                [req.messages],
                max_new_tokens=req.max_tokens,
                do_sample=req.temperature > 0,
                temperature=req.temperature or 1.0,
                num_return_sequences=req.n,
                seed=req.seed or 0,
            )
            prompt = scorer.chat_prompt_ids(req.messages)
            choices, n_new = [], 0
            for i, g in enumerate(gens):
                ids, text, stopped = _cut_at_stop(scorer, list(g.token_ids), g.text, req.stop)
                n_new += len(ids)
                on_eos = not stopped and len(ids) < req.max_tokens
                ch = {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop" if stopped or on_eos else "length",
                    "logprobs": None,
                }
                if req.logprobs:
                    chosen, top = scorer.score(prompt, ids, k, add_eos=on_eos)
                    ch["logprobs"] = {
                        "content": [
                            entry(t, lp) | {"top_logprobs": [entry(a, b) for a, b in (top[j] if k else [])]}
                            for j, (t, lp) in enumerate(chosen)
                        ]
                    }
                choices.append(ch)
        return {
            "id": f"chatcmpl-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(t0),
            "model": model_name,
            "choices": choices,
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": n_new, "total_tokens": len(prompt) + n_new},
        }

    @app.post("/v1/completions")
    def completions(req: CompletionRequest):
        k = req.logprobs
        if k is not None and not 0 <= k <= MAX_LOGPROBS:
            return _error(f"logprobs={k}: must be in 0..{MAX_LOGPROBS} (vLLM's --max-logprobs)")
        with lock:
            t0 = time.perf_counter()
            prompt = scorer.prompt_ids(req.prompt, True)
            choices, n_new = [], 0
            for i, (ids, on_eos) in enumerate(
                scorer.generate_raw(prompt, req.max_tokens, req.temperature, req.n, req.seed or 0)
            ):
                text = scorer.tok.decode(ids, skip_special_tokens=True)
                ids, text, stopped = _cut_at_stop(scorer, ids, text, req.stop)
                on_eos = on_eos and not stopped
                n_new += len(ids)
                ch = {
                    "index": i,
                    "text": text,
                    "finish_reason": "stop" if stopped or on_eos else "length",
                    "logprobs": None,
                }
                if k is not None:
                    chosen, top = scorer.score(prompt, ids, k, add_eos=on_eos)
                    toks = [scorer.token(t) for t, _ in chosen]
                    offsets = [len(req.prompt) + sum(len(x) for x in toks[:j]) for j in range(len(toks))]
                    lps = [lp for _, lp in chosen]
                    tops = [{scorer.token(a): b for a, b in top[j]} if k else None for j in range(len(chosen))]
                    if req.echo:
                        p_ids, p_lps, p_top, p_off = scorer.echo(req.prompt, k)
                        toks = [scorer.token(t) for t in p_ids] + toks
                        lps = p_lps + lps
                        tops = [None if t is None else {scorer.token(a): b for a, b in t} for t in p_top] + tops
                        offsets = p_off + offsets
                    ch["logprobs"] = {
                        "tokens": toks,
                        "token_logprobs": lps,
                        "top_logprobs": tops,
                        "text_offset": offsets,
                    }
                if req.echo:
                    ch["text"] = req.prompt + ch["text"]
                choices.append(ch)
        return {
            "id": f"cmpl-{time.time_ns()}",
            "object": "text_completion",
            "created": int(t0),
            "model": model_name,
            "choices": choices,
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": n_new, "total_tokens": len(prompt) + n_new},
        }

    return app


def serve(
    backend, model_name: str, port: int = 0, api_key: str | None = None
) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Start the server on 127.0.0.1 in a daemon thread; return (server, thread, base_url).

    port 0 lets the OS pick a free port (read back from the bound socket). Stop it with
    ``server.should_exit = True; thread.join()``.
    """
    server = uvicorn.Server(
        uvicorn.Config(make_app(backend, model_name, api_key), host=HOST, port=port, log_level="warning")
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(600):
        if server.started or not th.is_alive():
            break
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"the OpenAI-compatible server did not start on {HOST}:{port}")
    host, bound = server.servers[0].sockets[0].getsockname()[:2]
    return server, th, f"http://{host}:{bound}/v1"


def main() -> None:
    from omegaconf import OmegaConf

    from jobs.backends import make_backend

    p = argparse.ArgumentParser()
    p.add_argument("--model-conf", required=True)
    p.add_argument("--port", type=int, default=8011)
    a = p.parse_args()
    conf = OmegaConf.to_container(OmegaConf.load(a.model_conf))
    backend = make_backend({**conf, "backend": "hf"})
    uvicorn.run(make_app(backend, conf["name"]), host=HOST, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
