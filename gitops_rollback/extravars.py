"""Extra vars given on the command line, as ``ansible-playbook -e`` takes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable


class ExtraVarsError(ValueError):
    """An --extra-vars argument that is neither KEY=VALUE, a JSON object nor @file."""


def parse_extra_vars(items: Iterable[str]) -> Dict[str, Any]:
    """Merge KEY=VALUE items, JSON objects and @file contents, later ones winning."""
    merged: Dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            item = Path(item[1:]).read_text(encoding="utf-8")
        if item.lstrip().startswith("{"):
            try:
                merged.update(json.loads(item))
            except ValueError as exc:
                raise ExtraVarsError(f"--extra-vars {item!r} is not a JSON object: {exc}") from exc
        elif "=" in item:
            key, value = item.split("=", 1)
            merged[key] = value
        else:
            raise ExtraVarsError(f"--extra-vars {item!r}: give KEY=VALUE, a JSON object or @file.json.")
    return merged
