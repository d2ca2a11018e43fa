"""The failures a work unit can end in, as types: the scheduler decides retry or not on ``kind``.

    DataError        the unit's data cannot be used (every row malformed, a file missing, an
                     unknown name); retrying will not help
    ScoringError     a score or setting unit (no model) failed
    ModelOutOfMemory the model ran out of (GPU) memory; retried with a smaller batch
    StoreFull        the store's disk is full (``jobs.records.atomic_write``); the run stops
    UnitError        any other failure of a unit, retried

``classified(kind)`` is the one place that turns what jobs/ and its libraries raise into these
types (a FileNotFoundError is a data error; torch's OutOfMemoryError is an out-of-memory); the
worker side wraps every unit in it, and the driver only reads ``kind`` (``failure_kind``). The
driver never imports torch: torch's error is recognized by its class name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UnitError(Exception):
    """A work unit failed. ``kind`` is its failure class (orchestrator/ledger.FAILURE_CLASSES)."""

    kind = "error"


class DataError(UnitError, ValueError):
    """The data of a work unit cannot be used (e.g. every row malformed); retrying will not help."""

    kind = "data_error"


class ScoringError(UnitError):
    """A score or setting unit failed (no model involved)."""

    kind = "scoring_error"


class ModelOutOfMemory(UnitError, MemoryError):
    """The model ran out of memory on its device."""

    kind = "oom"


class StoreFull(UnitError, OSError):
    """A write into the store failed for lack of space (ENOSPC, EDQUOT, EFBIG). The message (one
    line) names the file, its folder and the space left there; nothing half-written is left."""

    kind = "disk_full"

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


KINDS = ("data_error", "scoring_error", "oom", "disk_full", "error")
_OOM_NAMES = {"OutOfMemoryError"}  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError


def _typed(exc: BaseException, default: type[UnitError]) -> UnitError:
    from jobs.registry import UnknownNameError

    if isinstance(exc, (FileNotFoundError, UnknownNameError)):
        return DataError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, MemoryError) or _OOM_NAMES & {t.__name__ for t in type(exc).__mro__}:
        return ModelOutOfMemory(f"{type(exc).__name__}: {exc}")
    return default(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def classified(default: type[UnitError] = UnitError) -> Iterator[None]:
    """Re-raise whatever the body raises as a UnitError (``default`` when nothing more specific
    applies), chained to the original; UnitErrors and interrupts pass through unchanged."""
    try:
        yield
    except UnitError:
        raise
    except Exception as exc:
        raise _typed(exc, default) from exc


def failure_kind(exc: BaseException) -> str:
    """The failure class of ``exc`` or of the worker-side exception it carries (Ray wraps a
    task's exception in a RayTaskError that is also an instance of the original's class and
    keeps it as ``cause``)."""
    for e in (exc, getattr(exc, "cause", None)):
        if isinstance(e, UnitError):
            return e.kind
    return "error"
