"""Transformers causal-LM backend: batched generation with per-token statistics.

One object holds one loaded model; Ray actors in ``cluster/`` keep it resident.

Statistics come from ``generate`` itself (raw logits and the probe layer's hidden state of
each decoding step, reduced step by step by forward hooks), so no extra pass over the prompt
is needed: on a CPU the prompt pass dominates.
Samples share one prompt pass (the KV cache is repeated m times).

Batch invariance (README "Batch invariance"): a row's tokens, log-probabilities and hidden states
do not depend on its batch-mates. Prompts are left-padded with explicit position ids and an
attention mask, so a padded row computes what it computes alone (float32: within ~1e-5 in log p,
``tests/unit/test_batch_invariance.py``); sampled rows draw from their own generator
(``_RowGumbel``), seeded per row by the stages (``jobs.stages.base.row_seed``).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Self

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from jobs.backends.base import ContinuationScore, Generation, Messages
from jobs.backends.hf_conf import HFConf
from jobs.backends.model_source import resolve

#: Words whose next-token probability p(True) sums: each spelling that is one whole token of the
#: model's vocabulary, with and without a leading space (``whole_word_ids``). A spelling split into
#: pieces ("TRUE" -> "TR" + "UE" for SmolLM2) is left out: its first piece also starts other replies.
TRUE_WORDS = ("True", "true", "TRUE")
FALSE_WORDS = ("False", "false", "FALSE")


#: continuation positions whose full-vocabulary log-softmax is held at once (cloze scoring)
HEAD_CHUNK = 256

#: the backend's spec is its config class (``jobs/backends/hf_conf.py``): one default per field
HFModelSpec = HFConf


class HFBackend:
    def __init__(self, spec: HFModelSpec, torch_threads: int | None = None):
        self.spec = spec
        if torch_threads:
            torch.set_num_threads(torch_threads)
        resolved = resolve(spec.source, spec.id, spec.file, spec.revision)
        self.identity = resolved.identity
        device = spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and spec.gpu_memory_fraction:
            torch.cuda.set_per_process_memory_fraction(spec.gpu_memory_fraction)
        self.device = torch.device(device)
        dtype = _torch_dtype(spec.dtype, self.device)
        kw = {"revision": resolved.revision} if resolved.revision else {}
        kw["trust_remote_code"] = bool(spec.trust_remote_code)
        self.tok = AutoTokenizer.from_pretrained(resolved.load_path, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(resolved.load_path, dtype=dtype, **kw).to(self.device)
        self._setup()

    @classmethod
    def from_model(cls, model, tokenizer, spec: HFModelSpec, identity: str = "in-memory") -> HFBackend:
        """A backend around a model already in memory (benchmarks, tests); ``spec`` gives the options.

        The model stays on its device and dtype; ``spec.source`` / ``id`` / ``dtype`` are not used.
        """
        self = cls.__new__(cls)
        self.spec = spec
        self.identity = identity
        self.model, self.tok = model, tokenizer
        self.device = next(model.parameters()).device
        self._setup()
        return self

    def _setup(self) -> None:
        """What both constructors do once model and tokenizer are there."""
        spec = self.spec
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model.eval()
        self.has_chat_template = bool(getattr(self.tok, "chat_template", None)) and spec.use_chat_template
        self._eos_ids = self._eos_token_ids()
        self._tf_ids = (self.whole_word_ids(TRUE_WORDS), self.whole_word_ids(FALSE_WORDS))

    # ----------------------------------------------------------------- prompts
    def render(self, messages: Messages, add_generation_prompt: bool = True) -> str:
        if self.has_chat_template:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        from jobs.prompts import plain_prompt

        return plain_prompt(messages)

    def _eos_token_ids(self) -> set[int]:
        ids = set()
        for src in (self.model.generation_config.eos_token_id, self.tok.eos_token_id):
            if src is None:
                continue
            ids.update(src if isinstance(src, (list, tuple)) else [src])
        return ids

    def whole_word_ids(self, words) -> list[int]:
        """Token ids that are one of ``words`` as a single whole token, bare or after one leading
        space ("True", " True"); a spelling the tokenizer splits into several tokens gives none."""
        ids = set()
        for w in words:
            for v in (w, " " + w):
                t = self.tok.encode(v, add_special_tokens=False)
                if len(t) == 1 and self.tok.decode(t).strip() == w:
                    ids.add(t[0])
        return sorted(ids)

    @property
    def context_length(self) -> int | None:
        """Tokens the model attends to (prompt + generation), from its config."""
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            v = getattr(cfg, name, None) or getattr(getattr(cfg, "text_config", None), name, None)
            if v:
                return int(v)
        return None

    def prompt_tokens(self, messages: Messages) -> int:
        """Tokens of the rendered prompt, as ``generate`` would feed them."""
        return len(self.tok(self.render(messages), add_special_tokens=not self.has_chat_template)["input_ids"])

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.tok.decode([i]) for i in ids]

    # -------------------------------------------------------------- generation
    def _encode(self, prompts: list[Messages]) -> dict:
        texts = [self.render(m) for m in prompts]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=not self.has_chat_template)
        return {k: v.to(self.device) for k, v in enc.items()}

    def _shared_prefill(self, enc: dict, m: int):
        """Run the prompts once (all but the last token) and repeat the KV cache m times.

        ``generate(num_return_sequences=m)`` would prefill every prompt m times; on a CPU,
        where prefill dominates, sharing it makes m samples cost about one prompt pass.
        """
        ids, mask = enc["input_ids"], enc["attention_mask"]
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=pos[:, :-1],
            use_cache=True,
            logits_to_keep=1,
        )  # only the cache is used: no (rows x tokens x vocab) logits
        cache = out.past_key_values
        cache.batch_repeat_interleave(m)
        return {
            "input_ids": ids.repeat_interleave(m, 0),
            "attention_mask": mask.repeat_interleave(m, 0),
            "past_key_values": cache,
        }

    @torch.inference_mode()
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
        """Generate for a batch of chat prompts; output is prompt-major (n per prompt).

        with_stats: also return per-token log p and entropy (from the raw logits of each
        decoding step) and the probe-layer hidden state at the last new token. They are
        computed step by step (:class:`_StepStats`): memory O(batch x vocab), not
        O(batch x steps x vocab) plus every layer's hidden states as with ``output_logits``.
        row_seeds (sampling): one seed per returned row (prompt-major); each row then draws from
        its own generator (``_RowGumbel``), so its samples do not depend on the batch. Without
        them, ``torch.manual_seed(seed)`` seeds the whole batch (``generate``'s own sampling).
        """
        enc = self._encode(prompts)
        torch.manual_seed(seed)
        n_rows = len(prompts) * num_return_sequences
        if row_seeds is not None and len(row_seeds) != n_rows:
            raise ValueError(
                f"row_seeds has {len(row_seeds)} seeds; expected one per returned row: "
                f"{len(prompts)} prompts x {num_return_sequences} = {n_rows}"
            )
        gen_kw = self._generate_kwargs(max_new_tokens, do_sample, temperature, row_seeds, with_stats)
        t0 = time.perf_counter()
        n_prompt = enc["attention_mask"].sum(1).repeat_interleave(num_return_sequences).tolist()
        prompt_len = enc["input_ids"].shape[1]
        stats = (
            _StepStats(self.model, self.spec.hidden_layer, self._eos_ids | {self.tok.pad_token_id}, max_new_tokens)
            if with_stats
            else contextlib.nullcontext()
        )
        out = self._run_generate(enc, gen_kw, num_return_sequences, stats)
        new = out.sequences[:, prompt_len:]
        gens, lengths = self._decode_rows(new.tolist(), n_prompt)
        if with_stats:
            self._fill_stats(stats, new, lengths, gens)
        dt = (time.perf_counter() - t0) / max(1, len(gens))
        for g in gens:
            g.latency_s = dt
        return gens

    def _generate_kwargs(
        self, max_new_tokens: int, do_sample: bool, temperature: float, row_seeds: list[int] | None, with_stats: bool
    ) -> dict:
        """``model.generate``'s decoding options: greedy, its own sampling, or per-row Gumbel-max
        sampling (greedy over scores perturbed by ``_RowGumbel``)."""
        gen_kw = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tok.pad_token_id,
            "eos_token_id": sorted(self._eos_ids) or None,
            "return_dict_in_generate": True,
        }
        if self.spec.stop and not with_stats:
            gen_kw.update(stop_strings=list(self.spec.stop), tokenizer=self.tok)
        if do_sample and row_seeds is not None:
            # Gumbel-max per row: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T)
            from transformers import LogitsProcessorList

            gen_kw.update(do_sample=False, temperature=None, top_k=None, top_p=None)
            gen_kw["logits_processor"] = LogitsProcessorList([_RowGumbel(row_seeds, temperature, self.device)])
        elif do_sample:
            gen_kw.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        return gen_kw

    def _run_generate(self, enc: dict, gen_kw: dict, num_return_sequences: int, stats):
        """``model.generate`` under the step-statistics hooks ``stats``; several samples of a prompt
        share one prompt pass (``_shared_prefill``)."""
        prompt_len = enc["input_ids"].shape[1]
        if num_return_sequences > 1 and prompt_len > 1:
            kw = self._shared_prefill(enc, num_return_sequences)
            with warnings.catch_warnings(), stats:  # past_key_values is renamed in newer transformers
                warnings.simplefilter("ignore", FutureWarning)
                return self.model.generate(**kw, **gen_kw)
        with stats:
            return self.model.generate(**enc, **gen_kw, num_return_sequences=num_return_sequences)

    def _decode_rows(self, new: list[list[int]], n_prompt: list[int]) -> tuple[list[Generation], list[int]]:
        """Each generated row up to its first end-of-sequence or pad token, as a ``Generation``
        (text cut at the first stop string), and the rows' lengths in tokens."""
        gens: list[Generation] = []
        lengths = []
        for i, row in enumerate(new):
            ids = []
            for t in row:
                if t in self._eos_ids or t == self.tok.pad_token_id:
                    break
                ids.append(t)
            lengths.append(len(ids))
            gens.append(
                Generation(
                    text=self._cut(self.tok.decode(ids, skip_special_tokens=True)).strip(),
                    n_prompt_tokens=int(n_prompt[i]),
                    n_new_tokens=len(ids),
                    token_ids=ids,
                )
            )
        return gens, lengths

    def _cut(self, text: str) -> str:
        """Cut the text at the first stop string (after leading whitespace)."""
        text = text.lstrip()
        for s in self.spec.stop:
            i = text.find(s)
            if i >= 0:
                text = text[:i]
        return text

    def _fill_stats(self, stats: _StepStats, new, lengths, gens) -> None:
        """Per-token log p and entropy from the raw step logits; probe-layer hidden state.

        The hidden state is taken where the last answer token is the *input* (the step that
        decided to stop); for an answer cut by max_new_tokens, at the last step computed.
        """
        tok_lp, entropy, hidden = stats.finish(new)
        tok_lp, entropy, hidden = (t.cpu().numpy().astype(np.float32) for t in (tok_lp, entropy, hidden.float()))
        for i, (g, n) in enumerate(zip(gens, lengths)):
            g.token_logprobs = tok_lp[i, :n].copy()
            g.token_entropy = entropy[i, :n].copy()
            g.hidden = hidden[i].copy()
        prompt_hidden = stats.prompt_hidden.float().cpu().numpy().astype(np.float32)
        for i, g in enumerate(gens):
            g.prompt_hidden = prompt_hidden[i].copy()

    @torch.inference_mode()
    def true_false_prob(self, prompts: list[Messages]) -> np.ndarray:
        """P(True) normalized over {True, False} for the next token after each prompt: the summed
        probability of the whole-token spellings of True (``TRUE_WORDS``, ``whole_word_ids``) over
        that of True and False together."""
        enc = self._encode(prompts)
        pos = (enc["attention_mask"].cumsum(1) - 1).clamp(min=0)
        logits = self.model(**enc, position_ids=pos, logits_to_keep=1).logits[:, -1].float()
        probs = torch.softmax(logits, -1)
        t_ids, f_ids = self._tf_ids
        p_t = probs[:, t_ids].sum(-1)
        p_f = probs[:, f_ids].sum(-1)
        return (p_t / (p_t + p_f).clamp(min=1e-30)).cpu().numpy().astype(np.float64)

    def option_token_ids(self, option: str) -> list[int]:
        """Token ids that spell ``option`` as one whole token: the option itself and with a leading
        space (``"B"``, ``" B"``); for a word (``yes``) also its capitalized form. Multi-token
        spellings are left out (their first piece is a prefix of other words)."""
        return self.whole_word_ids({option, option.capitalize()} if len(option) > 1 else {option})

    @torch.inference_mode()
    def choice_logprobs(
        self, prompts: list[Messages], options: list[list[str]], prefix: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Constrained answers: log p of each option as the next token after prompt + ``prefix``.

        One forward pass per batch, no generation, the way lm-evaluation-harness scores multiple
        choice (EleutherAI/lm-evaluation-harness ``lm_eval/api/task.py``, output_type
        ``multiple_choice``: ``ConfigurableTask.construct_requests`` asks one log-likelihood per
        choice, ``(ctx, f"{target_delimiter}{choice}")``, after an optional assistant ``gen_prefix``;
        ``process_results`` takes ``argmax`` of those log-likelihoods as the answer, for ``acc``;
        MMLU-style tasks use the option letters as the choices). Here every choice is one next
        token, so all of them are read from the last position's logits of one pass: an option's
        log p is the log of the summed probability of its whole-token spellings
        (``option_token_ids``: "B" and " B", so the harness's " B" is one of them).

        prompts: chat messages, rendered like ``generate`` (chat template, or plain text for a
                 base model); ``prefix`` (e.g. "The answer is") is appended to the rendered text,
                 after a space unless the text ends in whitespace (the assistant turn's start).
        options: per prompt, the option strings ("A".."E", or "yes"/"no").
        Returns (logp, hidden): logp (B, K) float64 raw log p under the full vocabulary, K the
        most options of any prompt, -inf where a prompt has fewer options (or an option has no
        whole-token spelling); hidden (B, H) float32, the probe layer's hidden state
        (``hidden_states[hidden_layer]``) at the last prompt token.
        """
        from jobs.prompts import with_prefix

        texts = [with_prefix(self.render(m), prefix) for m in prompts]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=not self.has_chat_template)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        pos = (enc["attention_mask"].cumsum(1) - 1).clamp(min=0)
        out = self.model(**enc, position_ids=pos, output_hidden_states=True, logits_to_keep=1)
        logp_all = torch.log_softmax(out.logits[:, -1].float(), -1)
        hidden = out.hidden_states[self.spec.hidden_layer][:, -1].float().cpu().numpy().astype(np.float32)
        k = max(len(o) for o in options)
        logp = np.full((len(prompts), k), -np.inf)
        for i, opts in enumerate(options):
            for j, opt in enumerate(opts):
                ids = self.option_token_ids(opt)
                if ids:
                    logp[i, j] = float(torch.logsumexp(logp_all[i, ids], 0))
        return logp, hidden

    # ------------------------------------------------------------- cloze scoring
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-evaluation-harness ``HFLM._encode_pair`` makes them:
        trailing spaces of the context move to the continuation, ``context + continuation`` is
        tokenized whole and the continuation is what follows the context's own tokens. Special tokens
        as ``generate`` adds them to a plain-text prompt (Gemma's BOS; none for SmolLM2)."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.tok(context + continuation, add_special_tokens=True)["input_ids"]
        ctx = self.tok(context, add_special_tokens=True)["input_ids"]
        return whole[: len(ctx)], whole[len(ctx) :]

    def _head_logp(self, h: torch.Tensor) -> torch.Tensor:
        """log-softmax of the LM head at hidden states ``h`` (N, H) (the final norm's output), as
        ``model.forward`` computes the logits (Gemma's final logit soft-capping included)."""
        logits = self.model.get_output_embeddings()(h).float()
        cfg = self.model.config
        cap = getattr(cfg, "final_logit_softcapping", None) or getattr(
            getattr(cfg, "text_config", None), "final_logit_softcapping", None
        )
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, -1)

    @torch.inference_mode()
    def continuation_logprobs(self, questions: list[list[tuple[str, str]]]) -> list[list[ContinuationScore]]:
        """Cloze scoring: log p of each continuation's tokens after its context (no chat template).

        ``questions``: per question, its requests ``(context, continuation)`` (one per option).
        Work shared per batch (``benchmarks/cloze_scoring.py`` measures both against scoring every
        (question, option) sequence alone):

        - one pass over the questions' shared prefixes (the longest token prefix common to all of a
          question's requests, up to its shortest context minus one token), left-padded; its KV cache
          is then expanded to one row per request (``batch_select_indices``);
        - one pass over every request's remaining tokens (right-padded) on that cache, through the
          base model only (``get_decoder``); the LM head (``_head_logp``) is applied only at the
          positions whose log p is read: one per continuation token (Gemma-3's 262k-row head
          dominates a full-sequence pass).

        Positions continue each row's own prefix length (``position_ids``), so padding changes
        nothing; a question whose requests share no token (a WinoGrande blank at the sentence start)
        runs without the prefix pass. The hidden state is the probe layer's (``hidden_states[
        hidden_layer]``, as ``choice_logprobs``) at the last context token of each request.
        """
        flat = [
            (qi, ri, *self.encode_pair(c, x)) for qi, reqs in enumerate(questions) for ri, (c, x) in enumerate(reqs)
        ]
        for qi, ri, ctx, cont in flat:
            if not ctx or not cont:
                raise ValueError(
                    f"question {qi} request {ri}: cloze needs a non-empty context and continuation "
                    f"(got {len(ctx)} context and {len(cont)} continuation tokens)"
                )
        by_q: dict[int, list] = {}
        for qi, _ri, c, x in flat:
            by_q.setdefault(qi, []).append((c, x))
        prefix_len = []
        for qi in range(len(questions)):
            whole = [c + x for c, x in by_q[qi]]
            n = min(len(c) for c, _x in by_q[qi]) - 1
            k = 0
            while k < n and all(w[k] == whole[0][k] for w in whole):
                k += 1
            prefix_len.append(k)
        out: list[list] = [[None] * len(reqs) for reqs in questions]
        with_prefix = [i for i, k in enumerate(prefix_len) if k > 0]
        without = [i for i, k in enumerate(prefix_len) if k == 0]
        for group in (with_prefix, without):
            if group:
                self._score_group(group, [f for f in flat if f[0] in set(group)], prefix_len, out)
        return out

    @staticmethod
    def _rest_pass(decoder, ids, mask, pos, cache):
        return decoder(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=cache is not None,
            output_hidden_states=True,
        )

    def _prefix_pass(self, decoder, group, flat, prefix_len):
        """One pass over the group's shared prefixes (left-padded), its KV cache expanded to one row
        per request: (cache, prefix mask, prefix length) per request row."""
        dev = self.device
        row_of = {qi: j for j, qi in enumerate(group)}
        first = {}
        for qi, _ri, c, _x in flat:
            first.setdefault(qi, c[: prefix_len[qi]])
        width = max(prefix_len[qi] for qi in group)
        ids = torch.full((len(group), width), self.tok.pad_token_id, dtype=torch.long)
        pmask = torch.zeros((len(group), width), dtype=torch.long)
        for qi in group:
            k = prefix_len[qi]
            ids[row_of[qi], width - k :] = torch.tensor(first[qi])
            pmask[row_of[qi], width - k :] = 1
        ids, pmask = ids.to(dev), pmask.to(dev)
        pos = (pmask.cumsum(1) - 1).clamp(min=0)
        cache = decoder(input_ids=ids, attention_mask=pmask, position_ids=pos, use_cache=True).past_key_values
        if cache is None:
            raise RuntimeError(f"{type(decoder).__name__} returned no KV cache for the prefix pass")
        sel = torch.tensor([row_of[f[0]] for f in flat], device=dev)
        cache.batch_select_indices(sel)
        return cache, pmask[sel], torch.tensor([prefix_len[f[0]] for f in flat], device=dev)

    def _rest_inputs(self, flat, prefix_len):
        """The rest of each request, right-padded: its tokens after the prefix, all but the last
        continuation token; (ids, mask, positions counted from 0)."""
        dev = self.device
        rest = [(c + x)[prefix_len[qi] : -1] for qi, _ri, c, x in flat]
        width = max(len(r) for r in rest)
        ids = torch.full((len(flat), width), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(flat), width), dtype=torch.long)
        for j, r in enumerate(rest):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = torch.arange(width, device=dev)[None, :].expand(len(flat), -1)
        return ids, mask, pos

    def _continuation_stats(self, res, flat, prefix_len):
        """From the rest pass's output: each continuation token's log p and entropy (flat, request
        after request) and the probe layer's hidden state at each request's last context token."""
        dev = self.device
        last = res.last_hidden_state
        probe = res.hidden_states[self.spec.hidden_layer]
        rows, cols, targets, hid_cols = [], [], [], []
        for j, (qi, _ri, c, x) in enumerate(flat):
            start = len(c) - 1 - prefix_len[qi]  # the position whose output predicts x[0]
            rows += [j] * len(x)
            cols += list(range(start, start + len(x)))
            targets += list(x)
            hid_cols.append(start)
        r_i = torch.tensor(rows, device=dev)
        c_i = torch.tensor(cols, device=dev)
        t_i = torch.tensor(targets, device=dev)
        lp_parts, ent_parts = [], []
        for a in range(0, len(rows), HEAD_CHUNK):  # (chunk x vocab) floats at a time: Gemma's is 262k wide
            logp = self._head_logp(last[r_i[a : a + HEAD_CHUNK], c_i[a : a + HEAD_CHUNK]])
            lp_parts.append(logp.gather(-1, t_i[a : a + HEAD_CHUNK, None])[:, 0])
            ent_parts.append(-(logp.exp() * logp).sum(-1))
        tok_lp = torch.cat(lp_parts).double().cpu().numpy()
        ent = torch.cat(ent_parts).double().cpu().numpy()
        hidden = probe[torch.arange(len(flat), device=dev), torch.tensor(hid_cols, device=dev)]
        return tok_lp, ent, hidden.float().cpu().numpy().astype(np.float32)

    def _score_group(self, group, flat, prefix_len, out) -> None:
        """Score the requests ``flat`` of the questions ``group`` (all with a shared prefix, or all
        without) into ``out[question][request]``."""
        decoder = self.model.get_decoder()
        cache, pmask, plen = None, None, None
        if prefix_len[group[0]] > 0:
            cache, pmask, plen = self._prefix_pass(decoder, group, flat, prefix_len)
        ids, mask, pos = self._rest_inputs(flat, prefix_len)
        if cache is not None:
            pos = pos + plen[:, None]
            mask_all = torch.cat([pmask, mask], 1)
        else:
            mask_all = mask
        with warnings.catch_warnings():  # past_key_values is renamed in newer transformers
            warnings.simplefilter("ignore", FutureWarning)
            res = self._rest_pass(decoder, ids, mask_all, pos, cache)
        tok_lp, ent, hidden = self._continuation_stats(res, flat, prefix_len)
        at = 0
        for j, (qi, ri, _c, x) in enumerate(flat):
            n = len(x)
            out[qi][ri] = ContinuationScore(
                token_logprobs=tok_lp[at : at + n].copy(),
                token_entropy=ent[at : at + n].copy(),
                token_texts=self.token_strings(list(x)),
                hidden=hidden[j].copy(),
            )
            at += n


class _RowGumbel:
    """A logits processor that samples each row from its own ``torch.Generator`` (Gumbel-max).

    ``argmax_k (logits_k / T + g_k)``, with ``g_k = -log(-log u_k)`` and ``u_k`` uniform, is a draw
    from ``softmax(logits / T)`` (the Gumbel-max trick; Maddison, Tarlow & Minka 2014, "A* Sampling",
    section 2). ``generate`` then runs greedy over the perturbed scores, so every step draws, for
    each row, one vector of ``vocab`` uniforms from that row's generator: a row's draws depend on
    its seed and the step alone, never on the other rows of the batch (``torch.manual_seed`` plus
    ``torch.multinomial`` draws the batch's rows from one stream, so a row's sample moved with its
    batch-mates). The full vocabulary, no top-k / top-p, as ``generate(do_sample=True, top_k=0)``.
    """

    def __init__(self, seeds: list[int], temperature: float, device: torch.device):
        if not temperature > 0:
            raise ValueError(f"sampling temperature must be > 0; got {temperature!r}")
        self.temperature = float(temperature)
        self.gens = []
        for s in seeds:
            g = torch.Generator(device="cpu")
            g.manual_seed(int(s))
            self.gens.append(g)
        self.device = device

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        b, v = scores.shape
        if b != len(self.gens):
            raise ValueError(f"_RowGumbel has {len(self.gens)} row generators for a batch of {b} rows")
        u = torch.stack([torch.rand(v, generator=g, dtype=torch.float64) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))
        return scores.float() / self.temperature + gumbel.to(device=scores.device, dtype=torch.float32)


class _StepStats:
    """Forward hooks that reduce each decoding step of ``generate`` to what the stats need.

    Replaces ``output_logits`` / ``output_hidden_states`` (every step's full-vocabulary logits,
    every layer's hidden states at every position, for the whole generation) with, per step:

    - the log-softmax of the raw last-position logits (the model's output, before any logits
      processor or temperature, in float32 as ``generate`` casts it), kept for one step only:
      the token chosen from it is the next step's input, where its log p is gathered;
    - the entropy of that distribution (B,);
    - the probe layer's last-position hidden state, kept per row only while the row is still
      generating, so it ends at step min(n_new, steps - 1), as ``hidden_states[step][layer]``.
    - that layer's hidden state at step 0's last position, the last prompt token (``prompt_hidden``,
      the learned routers' query representation).

    ``hidden_layer`` indexes ``hidden_states`` (n_layers + 1 entries): 0 is the input of the first
    decoder layer (the embeddings), k in 1..n_layers-1 the output of layer k-1, n_layers the
    final norm's output. Memory O(B x V + steps x B); no host synchronization per step.
    """

    def __init__(self, model, hidden_layer: int, stop_ids, max_steps: int):
        self.model = model
        self.max_steps = max_steps
        self.stop_ids = sorted(i for i in stop_ids if i is not None)
        decoder = model.get_decoder()
        n_layers = len(decoder.layers)
        if not -(n_layers + 1) <= hidden_layer <= n_layers:
            raise IndexError(f"hidden_layer {hidden_layer} is out of range for {n_layers + 1} hidden states")
        idx = hidden_layer % (n_layers + 1)
        if idx == 0:
            self._probe = (decoder.layers[0], "pre")
        elif idx == n_layers:
            self._probe = (decoder.norm, "post")
        else:
            self._probe = (decoder.layers[idx - 1], "post")
        self._handles = []

    def __enter__(self) -> Self:
        self.step = 0
        self.tok_lp, self.entropy = [], []
        self.prev_logp = self.hidden = self.alive = self._h = self.prompt_hidden = None
        module, kind = self._probe
        if kind == "pre":
            h = module.register_forward_pre_hook(self._probe_pre_hook, with_kwargs=True)
        else:
            h = module.register_forward_hook(self._probe_hook)
        self._handles = [h, self.model.register_forward_hook(self._step_hook, with_kwargs=True)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _probe_hook(self, module, args, output) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        self._h = out[:, -1]

    def _probe_pre_hook(self, module, args, kwargs) -> None:
        hs = args[0] if args else kwargs["hidden_states"]
        self._h = hs[:, -1]

    def _step_hook(self, module, args, kwargs, output) -> None:
        s = self.step
        if s >= self.max_steps:  # a look-ahead forward whose token generate drops
            return
        logp = torch.log_softmax(output.logits[:, -1].float(), dim=-1)
        h, self._h = self._h, None  # a view of the layer output: let that go with this step
        if s == 0:
            self.hidden = h.clone()
            self.prompt_hidden = h.clone()  # step 0's last position is the last prompt token
            self.alive = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
            self._stop = torch.tensor(self.stop_ids, dtype=torch.long, device=self.model.device)
        else:
            tok = kwargs["input_ids"][:, -1]
            self.tok_lp.append(self.prev_logp.gather(-1, tok[:, None])[:, 0])
            stopped = torch.isin(tok, self._stop.to(tok.device))
            self.alive = self.alive & ~stopped.to(self.alive.device)
            self.hidden = torch.where(self.alive[:, None].to(h.device), h, self.hidden)
        self.entropy.append(-(logp.exp() * logp).sum(-1))
        self.prev_logp = logp
        self.step += 1

    def finish(self, new: torch.Tensor):
        """(token log p (B, steps), entropy (B, steps), hidden (B, H)) for the new tokens ``new``."""
        steps = new.shape[1]
        tok_lp = self.tok_lp[:steps]
        if len(tok_lp) < steps:  # the last token is nobody's input: gather it from the last step
            last = new[:, steps - 1].to(self.prev_logp.device)
            tok_lp.append(self.prev_logp.gather(-1, last[:, None])[:, 0])
        self.prev_logp = None
        return torch.stack(tok_lp, 1), torch.stack(self.entropy[:steps], 1), self.hidden


def _torch_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere (CPU matmuls in bf16 are slow and lossy)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def from_conf(m: HFConf) -> HFBackend:
    return HFBackend(m, torch_threads=m.torch_threads)
