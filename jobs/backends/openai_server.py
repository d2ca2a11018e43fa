"""A small OpenAI-compatible chat server over a local transformers model.

For tests of the HTTP backend against a real model, and for serving an offline model
to a cluster: ``python -m jobs.backends.openai_server --model-conf conf/llm/x.yaml --port 8011``.
Implements ``POST /v1/chat/completions`` (greedy or sampled, ``n``, ``logprobs``) and
``GET /v1/models``; binds 127.0.0.1 by default.
"""
from __future__ import annotations

import argparse
import threading

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class ChatRequest(BaseModel):
    model: str
    messages: list[dict]
    max_tokens: int = 64
    temperature: float = 0.0
    n: int = 1
    seed: int | None = None
    logprobs: bool = False


def make_app(backend, model_name: str) -> FastAPI:
    app = FastAPI()
    lock = threading.Lock()  # one model, one generation at a time

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):
        with lock:
            gens = backend.generate([req.messages], max_new_tokens=req.max_tokens, do_sample=req.temperature > 0,
                                    temperature=req.temperature or 1.0, num_return_sequences=req.n,
                                    seed=req.seed or 0, with_stats=req.logprobs)
        choices = []
        for i, g in enumerate(gens):
            ch = {"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": "stop"}
            if req.logprobs and g.token_logprobs is not None:
                toks = backend.token_strings(g.token_ids)
                ch["logprobs"] = {"content": [{"token": t, "logprob": float(lp)}
                                              for t, lp in zip(toks, g.token_logprobs)]}
            choices.append(ch)
        return {"object": "chat.completion", "model": model_name, "choices": choices,
                "usage": {"prompt_tokens": gens[0].n_prompt_tokens,
                          "completion_tokens": sum(g.n_new_tokens for g in gens)}}

    return app


def main() -> None:
    from omegaconf import OmegaConf

    from jobs.backends import make_backend

    p = argparse.ArgumentParser()
    p.add_argument("--model-conf", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8011)
    a = p.parse_args()
    conf = OmegaConf.to_container(OmegaConf.load(a.model_conf))
    backend = make_backend({"backend": "hf", **conf})
    uvicorn.run(make_app(backend, conf["name"]), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
