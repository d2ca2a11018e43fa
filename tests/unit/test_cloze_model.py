"""Cloze scoring on real models: the hf backend's shared-prefix pass with the LM head applied only at
the read positions equals the naive full-sequence scoring of each (context, continuation) within
1e-4 (real SmolLM2-135M fp32, and a random Gemma-3 with logit soft-capping and a short sliding
window), and a question's scores do not depend on its batch-mates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs import cloze
from jobs.backends.hf import HFBackend, HFModelSpec
from jobs.datasets import load_samples
from tests.helpers import SMOL

TOL = 1e-4


@pytest.fixture(scope="module")
def smol():
    return HFBackend(HFModelSpec(**SMOL, dtype="float32", device="cpu", hidden_layer=-8), torch_threads=2)


def _questions():
    """Real requests of several formats: one shared context (ARC, PIQA, BoolQ's long passage,
    HellaSwag), contexts differing per option (WinoGrande), and a blank at the sentence start
    (no shared token: the path without a prefix pass)."""
    qs = []
    for name, fmt, n in (
        ("arc_easy", "arc", 1),
        ("piqa", "piqa", 1),
        ("winogrande", "winogrande", 2),
        ("boolq", "boolq", 1),
    ):
        for s in load_samples(name, limit=n, seed=0).samples:
            qs.append(cloze.cloze_question(s, fmt).requests)
    qs.append([("Kevin", " went home because he was tired."), ("Tom", " went home because he was tired.")])
    return qs


def naive(b: HFBackend, context: str, continuation: str):
    """Score one sequence alone with the whole model (all logits): (token log p, entropies, hidden)."""
    ctx, cont = b.encode_pair(context, continuation)
    with torch.inference_mode():
        out = b.model(input_ids=torch.tensor([ctx + cont]), output_hidden_states=True)
    logp = torch.log_softmax(out.logits[0].float(), -1)
    rows = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(cont))
    lp = logp[rows, torch.tensor(cont)].double().numpy()
    ent = (-(logp[rows].exp() * logp[rows]).sum(-1)).double().numpy()
    hidden = out.hidden_states[b.spec.hidden_layer][0, len(ctx) - 1].float().numpy()
    return lp, ent, hidden


def _check(b, qs):
    got = b.continuation_logprobs(qs)
    for reqs, scores in zip(qs, got):
        for (c, x), sc in zip(reqs, scores):
            lp, ent, hidden = naive(b, c, x)
            assert len(sc.token_logprobs) == len(lp) and len(sc.token_texts) == len(lp)
            np.testing.assert_allclose(sc.token_logprobs, lp, atol=TOL, rtol=0)
            np.testing.assert_allclose(sc.token_entropy, ent, atol=TOL, rtol=0)
            np.testing.assert_allclose(sc.hidden, hidden, atol=TOL, rtol=1e-4)
    return got


def test_shared_prefix_scoring_equals_naive_full_sequences_on_smollm2(smol):
    _check(smol, _questions())


def test_a_questions_scores_do_not_depend_on_its_batch(smol):
    qs = _questions()
    together = smol.continuation_logprobs(qs)
    for q, t in zip(qs[:2] + qs[-1:], together[:2] + together[-1:]):
        (alone,) = smol.continuation_logprobs([q])
        for a, b in zip(alone, t):
            np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=TOL, rtol=0)


def test_encode_pair_is_lm_evals(smol):
    # trailing context spaces move to the continuation; the continuation is what follows the context
    ctx, cont = smol.encode_pair("Question: q\nAnswer: ", "yes")
    assert (ctx, cont) == tuple(smol.encode_pair("Question: q\nAnswer:", " yes"))
    assert smol.tok.decode(cont) == " yes"


@pytest.fixture(scope="module")
def tokenizer():
    from tests.helpers import smol_tokenizer

    return smol_tokenizer()


def test_head_at_positions_matches_a_soft_capped_sliding_window_model(tokenizer):
    """Gemma-3's head path: final logit soft-capping and sliding-window layers (window 4, shorter
    than the prompts) on a random Gemma-3 text model, against its own full forward."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        final_logit_softcapping=3.0,
        initializer_range=0.5,
        pad_token_id=tokenizer.pad_token_id or 0,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    b = HFBackend.from_model(model, tokenizer, HFModelSpec(**SMOL, hidden_layer=-2))
    _check(b, _questions()[:4] + _questions()[-1:])
