"""The hf backend's config (``backend: hf``), torch-free so the driver validates it without torch.

The backend itself is ``jobs/backends/hf.py`` (``from_conf``); this class is also its runtime spec
(``HFModelSpec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jobs.backends.base import ModelConf

#: weight dtypes and quantizations of the hf backend
HF_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "auto")
#: none today: a quantization joins only once a row's outputs stay the same inside any batch
#: (``tests/unit/test_batch_invariance.py``)
HF_QUANTIZE: tuple[str, ...] = ()
#: quantizations that were options once, and why they are not any more
REMOVED_QUANTIZE = {
    "int8_dynamic": (
        "dynamic int8 computes its activation scales per batch, pad tokens included, so a row's answer, "
        "log-probabilities and hidden state depend on its batch-mates, the batch size and the CPU kind "
        "(issue 16: P(yes) of one StrategyQA prompt 0.12 in fp32, 0.56 alone in int8, 0.08 in an int8 "
        "batch of 8); leave quantize out (fp32)"
    ),
}


@dataclass(frozen=True, eq=False)
class HFConf(ModelConf):
    """A transformers causal LM: hub id, local folder, or GGUF file / wheel (``model_source``)."""

    factory: ClassVar[str] = "jobs.backends.hf:from_conf"

    source: str = "hub"  # hub | path | package | package_assemble (jobs/backends/model_source.py)
    id: str = ""  # hub id, path, or package import name
    file: str | None = None  # GGUF file name inside the folder / package
    revision: str | None = None
    dtype: str = "float32"  # float32 | float16 | bfloat16 | auto (bfloat16 on CUDA, float32 on CPU)
    quantize: str | None = None  # None only (HF_QUANTIZE); int8_dynamic was removed (REMOVED_QUANTIZE)
    use_chat_template: bool = True
    stop: list = field(default_factory=list)  # stop strings (base models without a chat template)
    hidden_layer: int = -8  # probe layer: index into hidden_states (-8 = 8th-to-last)
    trust_remote_code: bool = False  # run modelling code from the model's repository (the run warns)
    gpu_memory_fraction: float | None = None  # torch's own CUDA memory cap
    torch_threads: int | None = None
    device: str = "auto"  # auto: cuda when torch sees one, else cpu

    def check(self, where: str) -> None:
        from jobs.backends.model_source import SOURCES

        if self.quantize in REMOVED_QUANTIZE:
            raise ValueError(
                f"{where}: quantize={self.quantize!r} is no longer an option: {REMOVED_QUANTIZE[self.quantize]}"
            )
        for key, value, valid in (
            ("source", self.source, tuple(SOURCES)),
            ("dtype", self.dtype, HF_DTYPES),
            ("quantize", self.quantize, HF_QUANTIZE),
        ):
            if value is not None and value not in valid:
                raise ValueError(
                    f"{where}: {key}={value!r} is not valid; valid choices: {', '.join(valid) or '(none: leave it out)'}"
                )
        if not self.id:
            raise ValueError(f"{where}: 'id' is required for backend hf (hub id, path or package)")

    def warnings(self) -> list[str]:
        if not self.trust_remote_code:
            return []
        return [
            f"{self.name!r} sets trust_remote_code: true: it runs Python code shipped with "
            f"{self.id!r} (its repository's modelling files) in the model actor"
        ]
