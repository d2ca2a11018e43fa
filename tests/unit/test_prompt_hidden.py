"""The learned routers' query representation: the probe layer's hidden state at the last prompt token
(``Generation.prompt_hidden``, greedy column ``prompt_hidden_state``), on a tiny random Llama built
here, with left padding: it equals a plain forward pass over the prompt alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.backends.hf import HFBackend, HFModelSpec
from tests.helpers import smol_tokenizer, tiny_llama

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "user", "content": "Name a colour of the sky on a clear day, in one word please."}],
]


@pytest.fixture(scope="module")
def backend_factory():
    tok = smol_tokenizer()
    model = tiny_llama(tok)
    return lambda layer: HFBackend.from_model(model, tok, HFModelSpec(source="path", id="tiny", hidden_layer=layer))


@pytest.mark.parametrize("hidden_layer", [0, 1, -1])
def test_prompt_hidden_is_the_last_prompt_tokens_hidden_state(backend_factory, hidden_layer):
    be = backend_factory(hidden_layer)
    gens = be.generate(PROMPTS, max_new_tokens=4, with_stats=True)  # a batch: the shorter prompt is left-padded
    for p, g in zip(PROMPTS, gens):
        enc = be._encode([p])
        with torch.no_grad():
            ref = be.model(**enc, output_hidden_states=True).hidden_states[hidden_layer][0, -1].numpy()
        assert g.prompt_hidden.shape == ref.shape
        np.testing.assert_allclose(g.prompt_hidden, ref, rtol=0, atol=1e-4)
        assert not np.allclose(g.prompt_hidden, g.hidden)  # not the last generated token's state
    assert all(g.prompt_hidden is None for g in be.generate(PROMPTS, max_new_tokens=2))  # no stats asked


def test_greedy_stage_records_the_column(backend_factory):
    from jobs.stages import stage, stat_stages
    from jobs.types import Sample

    samples = [Sample(id="a", question="Is a cat a mammal?", task="yesno", gold="yes")]
    rows = stage("greedy").run(backend_factory(-1), samples, {}, {"max_new_tokens": 3, "seed": 0})
    assert len(rows[0]["prompt_hidden_state"]) == 32 and stat_stages()["prompt_hidden_state"] == "greedy"
