"""Configurations to and from JSON-ready dicts (checkpoints, study storage)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from sparsearch.config.condnet import CondNetConfig
from sparsearch.config.resnext import NetConfig, StageConfig
from sparsearch.config.user import UserNetConfig, user_config_from_dict
from sparsearch.errors import ConfigError

__all__ = ["config_from_dict", "config_to_dict"]


def config_to_dict(config: NetConfig | CondNetConfig | UserNetConfig) -> dict[str, Any]:
    """``{"family": "resnext" | "condconv" | "user", ...fields}`` with tuples as lists."""
    family = {CondNetConfig: "condconv", UserNetConfig: "user"}.get(type(config), "resnext")
    return {"family": family, **asdict(config)}


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def config_from_dict(data: Any) -> NetConfig | CondNetConfig | UserNetConfig:
    """The configuration :func:`config_to_dict` wrote; every field is validated again."""
    if not isinstance(data, dict):
        raise ConfigError(f"model config: expected an object, got {type(data).__name__}")
    data = dict(data)
    family = data.pop("family", None)
    if family == "condconv":
        return _build(CondNetConfig, data, "model config")
    if family == "user":
        return user_config_from_dict(data)
    if family != "resnext":
        raise ConfigError(f"model config: family={family!r}; allowed: resnext, condconv, user")
    stages = data.pop("stages", None)
    if not isinstance(stages, list | tuple):
        raise ConfigError("model config: 'stages' must be a list")
    data["stages"] = [_build(StageConfig, s, f"model config stage {i}") for i, s in enumerate(stages)]
    return _build(NetConfig, data, "model config")
