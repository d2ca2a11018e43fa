"""p(True) reads whole-word True / False tokens only (issue 8, item 2), on the real SmolLM2 tokenizer.

Before: the first token of each spelling was taken, and SmolLM2 splits "TRUE" into "TR" + "UE" and
"FALSE" into "F" + "AL" + "SE", so P(False) summed every reply starting with "F" (and P(True) every
one starting with "TR"). The expected sets are found independently by decoding the whole vocabulary.
"""

from __future__ import annotations

import pytest
import torch

from jobs.backends.hf import FALSE_WORDS, TRUE_WORDS, HFBackend, HFModelSpec
from tests.helpers import smol_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return smol_tokenizer()


class FixedLogits(torch.nn.Module):
    """A stand-in causal LM whose next-token logits are a fixed vector (for every prompt)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits, requires_grad=False)
        from transformers import GenerationConfig

        self.generation_config = GenerationConfig(eos_token_id=None)

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kw):
        class Out:
            pass

        out = Out()
        out.logits = self.logits.expand(input_ids.shape[0], input_ids.shape[1], -1)
        return out


def _backend(tokenizer, logits):
    return HFBackend.from_model(FixedLogits(logits), tokenizer, HFModelSpec(source="path", id="fixed"))


def _vocab_ids(tokenizer, words):
    """Every vocabulary id that decodes to one of ``words``, bare or after one space."""
    allowed = set(words) | {" " + w for w in words}
    return sorted(i for i in range(len(tokenizer)) if tokenizer.decode([i]) in allowed)


def test_true_false_sets_are_the_whole_word_tokens_of_smollm2(tokenizer):
    be = _backend(tokenizer, torch.zeros(len(tokenizer)))
    t_ids, f_ids = be._tf_ids
    assert t_ids == _vocab_ids(tokenizer, TRUE_WORDS)
    assert f_ids == _vocab_ids(tokenizer, FALSE_WORDS)
    assert {tokenizer.decode([i]) for i in t_ids} == {"True", " True", "true", " true"}
    assert {tokenizer.decode([i]) for i in f_ids} == {"False", " False", "false", " false"}
    # the pieces SmolLM2 splits TRUE / FALSE into are not in the sets
    pieces = {tokenizer.encode(w, add_special_tokens=False)[0] for w in ("TRUE", " TRUE", "FALSE", " FALSE")}
    assert {tokenizer.decode([i]) for i in pieces} == {"TR", " TR", "F", " F"}
    assert not pieces & (set(t_ids) | set(f_ids))


def test_a_reply_starting_with_F_does_not_count_as_false(tokenizer):
    # the model would most likely say "Fine..." ("F"), then " True", then " False"
    logits = torch.full((len(tokenizer),), -30.0)
    f_piece = tokenizer.encode("FALSE", add_special_tokens=False)[0]
    true_id = tokenizer.encode(" True", add_special_tokens=False)[0]
    false_id = tokenizer.encode(" False", add_special_tokens=False)[0]
    logits[f_piece], logits[true_id], logits[false_id] = 5.0, 2.0, 1.0
    be = _backend(tokenizer, logits)
    (p,) = be.true_false_prob([[{"role": "user", "content": "Is 2 + 2 = 4? True or False?"}]])
    p_t, p_f = torch.softmax(logits, -1)[[true_id, false_id]].tolist()
    # the other whole-word spellings carry e^-30 each: negligible next to these
    assert p == pytest.approx(p_t / (p_t + p_f), rel=1e-6)
    assert p > 0.7  # before: "F" counted as False and p(True) was about 0.05


def test_option_token_ids_unchanged_for_letters_and_yes_no(tokenizer):
    be = _backend(tokenizer, torch.zeros(len(tokenizer)))
    assert {tokenizer.decode([i]) for i in be.option_token_ids("B")} == {"B", " B"}
    assert {tokenizer.decode([i]) for i in be.option_token_ids("yes")} == {"yes", " yes", "Yes", " Yes"}
