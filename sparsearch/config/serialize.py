"""Configurations to and from JSON-ready dicts (checkpoints, study storage), for any registered family."""

from __future__ import annotations

from typing import Any

from sparsearch.config.family import NetworkFamily, family_class
from sparsearch.errors import ConfigError

__all__ = ["config_from_dict", "config_to_dict"]


def config_to_dict(config: NetworkFamily) -> dict[str, Any]:
    """``{"family": "resnext" | "condconv" | "user" | ..., ...fields}``."""
    return config.to_dict()


def config_from_dict(data: Any) -> NetworkFamily:
    """The configuration :func:`config_to_dict` wrote; every field is validated again."""
    if not isinstance(data, dict):
        raise ConfigError(f"model config: expected an object, got {type(data).__name__}")
    data = dict(data)
    return family_class(data.pop("family", None)).from_dict(data)
