"""Lazy name -> object registries with "did you mean" errors.

Modelled on lm-evaluation-harness ``lm_eval/api/registry.py``: entries are
``"module:attr"`` strings imported on first use, so listing names (for config
validation on the driver) never imports torch or a model library.

The same key is used everywhere: registry, YAML file name, Parquet column value
and MLflow tag.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any


class UnknownNameError(KeyError):
    """An unknown registry key. The message names the kind, the bad value and the valid choices."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        close = difflib.get_close_matches(str(name), self.choices, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        msg = f"unknown {kind} {name!r}.{hint} Available: {', '.join(self.choices)}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class Registry:
    """A lazily-imported mapping ``name -> object`` for one kind of extension."""

    def __init__(self, kind: str, entries: dict[str, str] | None = None):
        self.kind = kind
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        self._order: list[str] = []
        for name, target in (entries or {}).items():
            self.add(name, target)

    def add(self, name: str, target: str | Any) -> None:
        if name in self._targets or name in self._loaded:
            raise ValueError(f"duplicate {self.kind} {name!r} in registry")
        if isinstance(target, str):
            if ":" not in target:
                raise ValueError(f"{self.kind} {name!r}: target {target!r} must look like 'module:attr'")
            self._targets[name] = target
        else:
            self._loaded[name] = target
        self._order.append(name)

    def copy(self) -> Registry:
        """A registry with the same entries (loaded ones shared), to extend without changing this one."""
        out = Registry(self.kind)
        out._targets, out._loaded, out._order = dict(self._targets), dict(self._loaded), list(self._order)
        return out

    def names(self) -> list[str]:
        return sorted(set(self._targets) | set(self._loaded))

    def in_order(self) -> list[str]:
        """The names in the order they were registered (``names`` sorts them)."""
        return list(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._targets or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> str:
        """Raise UnknownNameError unless ``name`` is registered; import nothing."""
        if name not in self:
            raise UnknownNameError(self.kind, name, self.names())
        return name

    def get(self, name: str) -> Any:
        self.check(name)
        if name not in self._loaded:
            self._loaded[name] = import_string(self._targets[name])
        return self._loaded[name]


def import_string(target: str) -> Any:
    """The object named by ``"package.module:attr.sub"``."""
    module, attr = target.split(":", 1)
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
