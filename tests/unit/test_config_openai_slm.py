"""An SLM on an OpenAI-compatible endpoint: accepted with every UQ method that needs no hidden
state; probes on it are refused at config time, by name, unless exclude rules drop them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ConfigError, load_grid
from orchestrator.grid import expand

CONF = Path(__file__).resolve().parents[2] / "conf"

GRID = """name: t
output_dir: {out}
slms: [vllm-example, smollm2-135m]
llms: [smollm2-135m]
uq: [perplexity, mean_token_entropy, ptrue, jaccard, probe, ood_probe]
datasets: [addsub, strategyqa]
"""


def load(tmp_path, body):
    p = tmp_path / "grid.yaml"
    p.write_text(body.replace("{out}", str(tmp_path / "out")))
    return load_grid(p, [], conf_dir=CONF)


def test_openai_slm_without_probes_is_accepted(tmp_path):
    r = load(tmp_path, GRID.replace(", probe, ood_probe", ""))
    assert r.slms["vllm-example"].backend == "openai" and r.slms["vllm-example"].top_logprobs == 20
    assert len(expand(r)) == 2 * 4 * 2


def test_openai_slm_with_probes_is_refused_naming_slm_methods_and_needs(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, GRID)
    msg = str(e.value)
    assert "slm 'vllm-example'" in msg and "backend='openai'" in msg
    assert "probe (needs hidden_state)" in msg and "ood_probe (needs hidden_state)" in msg
    works = msg.split("work with this SLM: ")[1].split(".")[0].split(", ")
    assert {"avg_token_prob", "perplexity", "mean_token_entropy", "ptrue", "jaccard", "verbal_1s"} <= set(works)
    assert "probe" not in works and "ood_probe" not in works
    assert "exclude: [{slm: vllm-example, uq: probe}, {slm: vllm-example, uq: ood_probe}]" in msg


def test_exclude_rules_that_drop_the_probe_settings_make_it_pass(tmp_path):
    body = GRID + "exclude: [{slm: vllm-example, uq: probe}, {slm: vllm-example, uq: ood_probe}]\n"
    r = load(tmp_path, body)
    settings = expand(r)
    assert not [s for s in settings if s.slm == "vllm-example" and s.uq in ("probe", "ood_probe")]
    assert [s for s in settings if s.slm == "smollm2-135m" and s.uq == "probe"]


def test_exclusions_are_checked_per_expanded_setting(tmp_path):
    # excluding the probe on one dataset only leaves it on the other: still refused, and only probe
    body = GRID + ("exclude: [{slm: vllm-example, uq: probe, dataset: addsub}, {slm: vllm-example, uq: ood_probe}]\n")
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body)
    assert "probe (needs hidden_state)" in str(e.value) and "ood_probe" not in str(e.value).split("work with")[0]


def test_openai_slm_identity_includes_top_logprobs(tmp_path):
    from orchestrator.grid import model_identity

    r = load(tmp_path, GRID.replace(", probe, ood_probe", ""))
    assert model_identity(r.slms["vllm-example"])["top_logprobs"] == 20
    assert "top_logprobs" not in model_identity(r.slms["smollm2-135m"])
