"""The user's own code, named ``module:function`` on the command line: data plug-ins and model factories.

The one place sparsearch imports a module by name. The module is found on ``sys.path`` or in the current
directory (as ``python -m`` would find it); whatever goes wrong — it does not import, has no such
function, or the function raises or does not take the contract's arguments — is a one-line
:class:`~sparsearch.errors.ConfigError` that names the spec and the contract.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from sparsearch.errors import ConfigError
from sparsearch.limits import MAX

__all__ = ["call_user_function"]


def _function(spec: str, what: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.append(here)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or any error the module raises while importing
        raise ConfigError(f"{what} {spec!r}: cannot import {module_name!r} ({type(err).__name__}: {err})") from None
    finally:
        if added:
            sys.path.remove(here)
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"{what} {spec!r}: {module_name!r} has no function {attr!r}")
    return function


def call_user_function(spec: str, what: str, contract: str, **arguments: Any) -> Any:
    """Import the function ``spec`` (``module:function``) and call it with ``arguments``; ``what`` names
    it in messages ("data plug-in", "model factory"), ``contract`` says what it must accept and return."""
    function = _function(spec, what)
    try:
        return function(**arguments)
    except Exception as err:  # the user's code failed, or does not take the contract's arguments
        first = str(err).splitlines()[0][: MAX["message_chars"]] if str(err) else ""
        raise ConfigError(f"{what} {spec!r} failed: {type(err).__name__}: {first} (the contract: {contract})") from None
