"""Twin properties: JSON merge patch (RFC 7386), as IoT Hub applies patches to twins.

>>> merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": 5})
{'a': 1, 'b': {'d': 3, 'e': 4}, 'f': 5}
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["merge_patch"]


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``target`` with ``patch`` merged in; a null in the patch deletes the key."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result
