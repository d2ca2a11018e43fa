"""An SLM behind an OpenAI-compatible endpoint: the project's server on 127.0.0.1 serving real
SmolLM2-135M (fp32) answers as vLLM does, and the generation stages run through the HTTP backend
give the same stats as the in-process hf backend: token log-probs to 1e-3 nats, entropies within
the proved bound of the top-k approximation, p(True) to 0.02."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from jobs import prompts
from jobs.backends import make_backend
from jobs.backends.openai_http import OpenAIBackend, tail_mass, topk_entropy
from jobs.datasets import load_samples
from jobs.records import write_table
from jobs.stages import stage
from jobs.stages.base import common_columns
from jobs.uq import UQ_METHODS, compute
from scripts.openai_server import serve
from tests.helpers import SMOL

pytestmark = pytest.mark.integration

# fp32, as every shipped model (README "Batch invariance")
CONF = {"name": "smollm2-fp32", "backend": "hf", **SMOL, "dtype": "float32", "torch_threads": 2}
K = 20
LOGPROB_TOL = 1e-3  # nats; fp32 teacher-forced pass vs cached decoding
PTRUE_TOL = 0.02
P = {"max_new_tokens": 16, "seed": 7, "num_samples": 3, "temperature": 1.0}


@pytest.fixture(scope="module")
def served():
    hf = make_backend(CONF)
    server, th, url = serve(hf, "smollm2")
    yield hf, server, url, OpenAIBackend(url, "smollm2", max_concurrency=2, top_logprobs=K)
    server.should_exit = True
    th.join(10)


@pytest.fixture(scope="module")
def samples():
    return load_samples("strategyqa", limit=3, seed=0).samples


def test_server_binds_loopback_only(served):
    _, server, url, _ = served
    assert url.startswith("http://127.0.0.1:")
    assert {s.getsockname()[0] for srv in server.servers for s in srv.sockets} == {"127.0.0.1"}


def test_chat_logprobs_are_vllm_shaped(served, samples):
    _, _, url, _ = served
    body = {
        "model": "smollm2",
        "messages": prompts.answer_messages(samples[0]),
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
    }
    ch = requests.post(url + "/chat/completions", json=body, timeout=60).json()["choices"][0]
    content = ch["logprobs"]["content"]
    assert 1 <= len(content) <= 5  # 4 tokens, or fewer plus the EOS that ended them
    for e in content:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}
        assert e["bytes"] == list(e["token"].encode())
        assert len(e["top_logprobs"]) == 5 and all(set(t) == {"token", "logprob", "bytes"} for t in e["top_logprobs"])
        lps = [t["logprob"] for t in e["top_logprobs"]]
        assert lps == sorted(lps, reverse=True) and e["logprob"] <= lps[0] + 1e-6
    too_many = requests.post(url + "/chat/completions", json=body | {"top_logprobs": 21}, timeout=60)
    assert too_many.status_code == 400 and "0..20" in too_many.json()["message"]
    # legacy completions: raw prompt, logprobs as an int; stop cuts the text
    c = requests.post(
        url + "/completions",
        json={
            "model": "smollm2",
            "prompt": "1, 2, 3,",
            "max_tokens": 6,
            "temperature": 0,
            "logprobs": 3,
            "stop": ["6"],
        },
        timeout=60,
    ).json()
    lp = c["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(len(t) == 3 for t in lp["top_logprobs"]) and "6" not in c["choices"][0]["text"]


def test_greedy_stage_matches_the_hf_backend(served, samples, tmp_path):
    hf, _, url, remote = served
    local = [stage("greedy").run(hf, [s], {}, P)[0] for s in samples]  # batch 1, as the server runs
    rows = stage("greedy").run(remote, samples, {}, P)
    diffs, errs = [], []
    for s, loc, row in zip(samples, local, rows):
        assert row["raw_output"] == loc["raw_output"]
        assert row["n_new_tokens"] == loc["n_new_tokens"] == len(row["token_logprobs"])
        assert row["token_texts"] == loc["token_texts"]
        assert row["hidden_state"] is None and loc["hidden_state"] is not None
        diffs.append(np.abs(np.subtract(row["token_logprobs"], loc["token_logprobs"])).max())
        # the bound: 0 <= H - H_k <= r log(V - k), r the unlisted mass at that position
        body = {
            "model": "smollm2",
            "messages": prompts.answer_messages(s),
            "max_tokens": P["max_new_tokens"],
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": K,
        }
        content = requests.post(url + "/chat/completions", json=body, timeout=60).json()["choices"][0]["logprobs"][
            "content"
        ]
        v = len(hf.tok)
        for e, h_exact, h_approx in zip(content, loc["token_entropy"], row["token_entropy"]):
            lps = [t["logprob"] for t in e["top_logprobs"]]
            assert h_approx == pytest.approx(topk_entropy(lps), abs=1e-5)
            gap = h_exact - h_approx
            assert -1e-3 <= gap <= tail_mass(lps) * math.log(v - K) + 1e-3
            errs.append(gap)
    print(
        f"max |logprob diff| {max(diffs):.2e}; entropy gap H - H_k: mean {np.mean(errs):.4f}, "
        f"max {np.max(errs):.4f} nats over {len(errs)} tokens"
    )
    assert max(diffs) <= LOGPROB_TOL
    # rows with a null hidden state are stored and read back, and the UQ methods that need no
    # hidden state score them
    write_table(tmp_path / "part.parquet", [common_columns(s, "eval", "strategyqa") | r for s, r in zip(samples, rows)])
    back = pq.read_table(tmp_path / "part.parquet").to_pylist()
    assert [r["hidden_state"] for r in back] == [None] * len(samples)
    stats = {
        "token_logprobs": [np.asarray(r["token_logprobs"]) for r in back],
        "token_entropy": [np.asarray(r["token_entropy"]) for r in back],
        "answer_logprob": np.full(len(back), np.nan),
    }
    for name in ("avg_token_prob", "perplexity", "mean_token_entropy"):
        assert np.isfinite(compute(UQ_METHODS.get(name), stats)).all()


def test_samples_ptrue_and_verbal_stages_over_http(served, samples):
    hf, _, _, remote = served
    greedy = {s.id: r["raw_output"] for s, r in zip(samples, stage("greedy").run(remote, samples, {}, P))}
    sampled = stage("samples").run(remote, samples, {}, P)
    assert [len(r["sampled_texts"]) for r in sampled] == [P["num_samples"]] * len(samples)
    again = stage("samples").run(remote, samples, {}, P)  # seeded: the same texts again
    assert [r["sampled_texts"] for r in again] == [r["sampled_texts"] for r in sampled]
    jac = compute(UQ_METHODS.get("jaccard"), {"sampled_texts": [r["sampled_texts"] for r in sampled]})
    assert np.isfinite(jac).all()

    remote_pt = [r["ptrue_prob"] for r in stage("ptrue").run(remote, samples, {"greedy": greedy}, P)]
    local_pt = [stage("ptrue").run(hf, [s], {"greedy": greedy}, P)[0]["ptrue_prob"] for s in samples]
    print(f"p(True) http {np.round(remote_pt, 4).tolist()} hf {np.round(local_pt, 4).tolist()}")
    assert np.abs(np.subtract(remote_pt, local_pt)).max() <= PTRUE_TOL

    verbal = stage("verbal_1s").run(remote, samples, {}, P)
    local_v = [stage("verbal_1s").run(hf, [s], {}, P)[0] for s in samples]
    assert [r["verbal_1s_raw"] for r in verbal] == [r["verbal_1s_raw"] for r in local_v]


# ---------------------------------------------------------------- cloze over /v1/completions echo
def test_cloze_scores_over_http_equal_the_in_process_backend(served):
    """decoding.answer_mode cloze through the HTTP backend (/v1/completions, echo, as lm-eval's
    local-completions): the same continuation tokens and log p as the hf backend's shared-prefix
    pass, entropies a lower bound of the full-vocabulary ones, the same answers from the stage."""
    from jobs import cloze
    from jobs.stages.cloze import cloze_greedy

    hf, _, _, http = served
    arc = load_samples("arc_easy", limit=2, seed=0).samples
    wino = load_samples("winogrande", limit=1, seed=0).samples
    qs = [cloze.cloze_question(s, "arc").requests for s in arc] + [
        cloze.cloze_question(s, "winogrande").requests for s in wino
    ]
    ours, theirs = hf.continuation_logprobs(qs), http.continuation_logprobs(qs)
    for a_q, b_q in zip(ours, theirs):
        for a, b in zip(a_q, b_q):
            assert a.token_texts == b.token_texts
            np.testing.assert_allclose(b.token_logprobs, a.token_logprobs, atol=LOGPROB_TOL, rtol=0)
            assert (b.token_entropy <= a.token_entropy + LOGPROB_TOL).all()
            assert b.hidden is None
    p = {"seed": 1, "answer_mode": "cloze", "cloze_format": "arc", "cloze_version": cloze.CLOZE_VERSION}
    rows_hf, rows_http = cloze_greedy(hf, arc, {}, p), cloze_greedy(http, arc, {}, p)
    assert [r["raw_output"] for r in rows_hf] == [r["raw_output"] for r in rows_http]
    np.testing.assert_allclose(
        [r["option_logprobs"] for r in rows_http], [r["option_logprobs"] for r in rows_hf], atol=LOGPROB_TOL
    )


def test_completions_echo_with_zero_new_tokens(served):
    _, _, url, _ = served
    body = {
        "model": "smollm2",
        "prompt": "Question: Is ice cold?\nAnswer: yes",
        "echo": True,
        "max_tokens": 0,
        "logprobs": 1,
    }
    ch = requests.post(f"{url}/completions", json=body, timeout=60).json()["choices"][0]
    lp = ch["logprobs"]
    assert ch["text"] == body["prompt"]
    assert lp["token_logprobs"][0] is None and all(x is not None for x in lp["token_logprobs"][1:])
    assert "".join(lp["tokens"]) == body["prompt"] and lp["text_offset"][0] == 0
    assert lp["text_offset"] == sorted(lp["text_offset"])
