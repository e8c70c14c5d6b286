"""Model types by name: what ``model.type`` in a config means.

A model type is a class over codec tokens and frame features (a subclass of
:class:`vab.model.base.TokenModel`).  The types of this package (``vab``,
``coarse2fine``) register with :func:`register_model_type` when they are defined; types
that live elsewhere (the FoleyGen baseline in ``vab.baselines``, or another package's
model) are found through the ``vab.model_types`` entry-point group of the installed
distributions, so this package never imports the code that builds on it::

    [project.entry-points."vab.model_types"]
    foleygen = "vab.baselines.foleygen:FoleyGen"
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable

from vab.errors import ConfigError

ENTRY_POINT_GROUP = "vab.model_types"

_TYPES: dict[str, type] = {}


def register_model_type(name: str) -> Callable[[type], type]:
    """Class decorator: make ``model.type: name`` build this class."""

    def register(cls: type) -> type:
        known = _TYPES.get(name)
        if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
            raise ConfigError(f"model type {name!r} is already registered by {known.__module__}.{known.__qualname__}")
        _TYPES[name] = cls
        return cls

    return register


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def model_types() -> list[str]:
    """Every known ``model.type`` name (registered, or installed as an entry point)."""
    return sorted(set(_TYPES) | set(_entry_points()))


def type_name(cls: type) -> str:
    """The ``model.type`` name `cls` is registered under (its class name if none)."""
    return next((name for name, known in _TYPES.items() if known is cls), cls.__name__)


def model_class(name: str) -> type:
    """The class registered for ``model.type`` `name`; ConfigError naming the known types."""
    cls = _TYPES.get(name)
    if cls is None:
        entry = _entry_points().get(name)
        if entry is None:
            raise ConfigError(f"model.type: unknown model type {name!r} (expected one of {', '.join(model_types())})")
        cls = _TYPES.setdefault(name, entry.load())
    return cls
