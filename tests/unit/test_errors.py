"""Failures are classified by type (jobs/errors.py), not by matching traceback text."""

from __future__ import annotations

import pytest

from cluster.executor import classify
from jobs.errors import DataError, ModelOutOfMemory, ScoringError, UnitError, classified, failure_kind
from jobs.registry import UnknownNameError


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError, recognized by its class name (the driver has no torch)."""


class CudaOOM(OutOfMemoryError):
    pass


def _raised(exc: BaseException, default=UnitError) -> UnitError:
    with pytest.raises(UnitError) as info:
        with classified(default):
            raise exc
    return info.value


@pytest.mark.parametrize(
    "exc,kind",
    [
        (FileNotFoundError("/data/boolq/dev.jsonl"), "data_error"),
        (UnknownNameError("dataset", "boolqq", ["boolq"]), "data_error"),
        (MemoryError(), "oom"),
        (CudaOOM("CUDA error"), "oom"),  # a subclass of the torch-named class
        (ValueError("shape mismatch"), "error"),
    ],
)
def test_classified_types_library_errors(exc, kind):
    err = _raised(exc)
    assert err.kind == kind and failure_kind(err) == kind and classify(err) == kind
    assert err.__cause__ is exc and type(exc).__name__ in str(err)


def test_default_kind_and_passthrough():
    assert _raised(KeyError("uncertainty"), ScoringError).kind == "scoring_error"
    original = DataError("dataset 'x' has no usable samples")
    assert _raised(original, ScoringError) is original  # a typed error keeps its own kind
    with pytest.raises(KeyboardInterrupt):
        with classified():
            raise KeyboardInterrupt


def test_a_message_mentioning_a_name_is_not_its_class():
    # the old classifier matched text: an error that merely says "DataError" or names
    # run_score_unit was taken for a data or scoring error
    assert failure_kind(RuntimeError("DataError: in run_score_unit")) == "error"
    assert classify(RuntimeError("FileNotFoundError: out of memory")) == "error"


def test_failure_kind_reads_a_wrapped_cause():
    class Wrapper(Exception):
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    assert failure_kind(Wrapper(ModelOutOfMemory("x"))) == "oom"
    assert failure_kind(Wrapper(ValueError("x"))) == "error"
