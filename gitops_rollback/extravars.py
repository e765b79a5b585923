"""Extra vars given on the command line, as ``ansible-playbook -e`` takes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable


class ExtraVarsError(ValueError):
    """An --extra-vars argument that is neither KEY=VALUE, a JSON object nor @file.

    The message names the argument (its position, or its file) and never shows its text: extra vars
    carry passwords and keys.
    """


def _text(item: str, where: str) -> str:
    if not item.startswith("@"):
        return item
    try:
        return Path(item[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExtraVarsError(f"{where}: {item[1:]} cannot be read ({type(exc).__name__}: "
                             f"{getattr(exc, 'strerror', None) or 'not UTF-8'}).") from exc


def parse_extra_vars(items: Iterable[str]) -> Dict[str, Any]:
    """Merge KEY=VALUE items, JSON objects and @file contents, later ones winning."""
    merged: Dict[str, Any] = {}
    for number, item in enumerate(items, 1):
        where = f"--extra-vars #{number}" + (f" ({item})" if item.startswith("@") else "")
        text = _text(item, where)
        if text.lstrip().startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:  # the decoder's message gives a position, never the text
                raise ExtraVarsError(f"{where} is not a JSON object: {exc}") from exc
            if not isinstance(value, dict):
                raise ExtraVarsError(f"{where} is not a JSON object.")
            merged.update(value)
        elif "=" in text:
            key, value = text.split("=", 1)
            merged[key] = value
        else:
            raise ExtraVarsError(f"{where}: give KEY=VALUE, a JSON object or @file.json (its text is not shown: "
                                 "extra vars may hold secrets).")
    return merged
