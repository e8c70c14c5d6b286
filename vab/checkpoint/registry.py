"""Model types by name: what ``model.type`` in a config means.

A model type is a class over codec tokens and frame features (a subclass of
:class:`vab.model.base.TokenModel`).  This package's own networks (``vab``, ``coarse2fine``)
are known here by import; types that live in later stages (the FoleyGen baseline in
``vab.baselines``) or in another package are found through the ``vab.model_types``
entry-point group of the installed distributions, so nothing here imports the code that
builds on it::

    [project.entry-points."vab.model_types"]
    foleygen = "vab.baselines.foleygen:FoleyGen"

:func:`register_model_type` adds a type at run time (a class decorator).
"""

from __future__ import annotations

from importlib import metadata
from typing import Callable

from vab.errors import ConfigError
from vab.model import Coarse2Fine, TokenModel, VAB

ENTRY_POINT_GROUP = "vab.model_types"

_TYPES: dict[str, type[TokenModel]] = {cls.model_type: cls for cls in (VAB, Coarse2Fine)}


def register_model_type(name: str) -> Callable[[type[TokenModel]], type[TokenModel]]:
    """Class decorator: make ``model.type: name`` build this class."""

    def register(cls: type[TokenModel]) -> type[TokenModel]:
        known = _TYPES.get(name)
        if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
            raise ConfigError(f"model type {name!r} is already registered by {known.__module__}.{known.__qualname__}")
        cls.model_type = name
        _TYPES[name] = cls
        return cls

    return register


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def model_types() -> list[str]:
    """Every known ``model.type`` name (registered, or installed as an entry point)."""
    return sorted(set(_TYPES) | set(_entry_points()))


def type_name(cls: type[TokenModel]) -> str:
    """The ``model.type`` name `cls` is built from (its class name for the base)."""
    return cls.model_type or cls.__name__


def model_class(name: str) -> type[TokenModel]:
    """The class of ``model.type`` `name`; ConfigError naming the known types."""
    cls = _TYPES.get(name)
    if cls is None:
        entry = _entry_points().get(name)
        if entry is None:
            raise ConfigError(f"model.type: unknown model type {name!r} (expected one of {', '.join(model_types())})")
        cls = _TYPES.setdefault(name, entry.load())
    return cls


def class_for(model_type: str, kind: type[TokenModel] = TokenModel) -> type[TokenModel]:
    """The class of `model_type`; ConfigError unless it is a `kind`."""
    found = model_class(model_type)
    if not (isinstance(found, type) and issubclass(found, kind)):
        raise ConfigError(f"holds a {model_type} model, not a {type_name(kind)} one")
    return found
