"""Typed config values shared by the driver and the workers: immutable containers and ``ConfView``.

A config object (``orchestrator.config``'s schemas, a backend's config class in ``jobs/backends``)
is a frozen dataclass read by attribute; ``plain(conf)`` is the plain data it holds, for code that
hashes, logs or writes it. No torch, no Ray, no OmegaConf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


class FrozenDict(dict):
    """A dict that refuses every change (free-form config fields: params, resources, per-task
    budgets). Equal to, hashed into keys and written to JSON / YAML like the plain dict it holds."""

    def _refuse(self, *a, **k):
        raise TypeError("a resolved config is immutable: derive a new one (ResolvedGrid.updated)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __deepcopy__(self, memo):
        return self  # immutable all the way down (values are frozen too)


class FrozenList(list):
    """A list that refuses every change (``exclude``, ``targets``, ``splits``, stop strings)."""

    def _refuse(self, *a, **k):
        raise TypeError("a resolved config is immutable: derive a new one (ResolvedGrid.updated)")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self):
        return (FrozenList, (list(self),))

    def __deepcopy__(self, memo):
        return self


def freeze(x: Any) -> Any:
    """``x`` with every dict / list (nested) made a FrozenDict / FrozenList; config objects as they are."""
    if isinstance(x, ConfView):
        return x
    if isinstance(x, Mapping):
        return FrozenDict({k: freeze(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return FrozenList(freeze(v) for v in x)
    return x


def plain(x: Any) -> Any:
    """Plain dicts / lists of ``x`` (a config object, a frozen container or anything JSON-able)."""
    if isinstance(x, ConfView):
        return {k: plain(getattr(x, k)) for k in _field_names(type(x))}
    if isinstance(x, Mapping):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


class ConfView:
    """A typed config object: a frozen dataclass read by attribute (``m.id``, ``r.grid.decoding``);
    nothing can be assigned. It does not read as a mapping: ``m["id"]``, ``m.get("id")``, ``"id" in m``
    and iterating raise a TypeError naming the attribute to read instead. Code that hashes, logs or
    writes a config takes its plain data: ``plain(m)`` / ``m.to_dict()``."""

    if not TYPE_CHECKING:  # at run time a clear error; for mypy, not indexable at all

        def __getitem__(self, key):
            raise _not_a_mapping(self, key)

        def get(self, key, default=None):
            raise _not_a_mapping(self, key)

        def __contains__(self, key):
            raise _not_a_mapping(self, key)

        def __iter__(self):
            raise _not_a_mapping(self, None)

    def __eq__(self, other: object) -> bool:
        """Equal to a config or a mapping holding the same values (``m == {"prices": "default"}``)."""
        return isinstance(other, (ConfView, Mapping)) and plain(self) == plain(other)

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict:
        return plain(self)

    def _frozen(self):
        """This object with its free-form dicts and lists frozen, nested sections too (once, right
        after ``OmegaConf.to_object`` made it)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            object.__setattr__(self, f.name, v._frozen() if isinstance(v, ConfView) else freeze(v))
        return self


def _not_a_mapping(conf: ConfView, key: Any) -> TypeError:
    name = type(conf).__name__
    if isinstance(key, str):
        how = (
            f"read the field as an attribute, conf.{key}"
            if key in _field_names(type(conf))
            else (f"it has no field {key!r}; its fields: {', '.join(_field_names(type(conf)))}")
        )
        return TypeError(f"{name} is a typed config, not a mapping: {how} (not conf[{key!r}] / .get / in)")
    return TypeError(
        f"{name} is a typed config, not a mapping: read its fields as attributes, or plain(conf) for a dict"
    )


@dataclass(frozen=True, eq=False)
class MetricsConf(ConfView):
    """The grid's ``metrics`` block; a setting unit's spec carries it with the UQ method's own NaN
    policy (``jobs.units.SettingSpec.metrics``, ``orchestrator.config.nan_policy_of``)."""

    ties: str = "expected"  # expected | stable
    # most_uncertain | drop: for UQ methods that declare no NaN policy of their own (the verbal
    # methods declare drop: UQMethod.nan_policy); a UQ entry's nan_policy wins over both: nan_policy_of
    nan_policy: str = "most_uncertain"
    bootstrap: int = 1000
    seed: int = 0


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return _FIELDS[cls]
