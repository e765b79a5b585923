# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a selective rollback keeps (``rollback_components``), and the names components go by.

A component is one entry of a layer a host configures: a flag set, a managed path, a database, a
Terraform project, or the release root. The plan (``plan.py``) narrows the host's settings with
:func:`select_components` before anything else, so the preview, the plan, the safety checkpoint and
the layers all take exactly the entries kept. Pure Python: no Ansible, no I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Dict, List

from ..db.connection import canonical_engine
from ..release.flag_names import component_name as flags_name


def layer_list(layers: Any) -> List[str]:
    """Return the requested layers as a list (also from ``"config, database"``, an AWX survey answer)."""
    if isinstance(layers, str):
        return [name.strip() for name in layers.split(",") if name.strip()]
    return [str(name) for name in layers or []]


def database_name(entry: Dict[str, Any]) -> str:
    """Return the component name ``<engine>/<database>`` a database entry is backed up as."""
    return "%s/%s" % (canonical_engine(entry.get("engine")), entry.get("source_database") or entry.get("database"))


def terraform_name(entry: Dict[str, Any]) -> str:
    """Return the component name ``<workspace>@<name or project path>`` of a Terraform entry."""
    name = entry.get("name") or os.path.abspath(str(entry.get("project_path") or ""))
    return "%s@%s" % (entry.get("workspace") or "default", name)


#: The layers whose entries are components a selection (rollback_components) can name, and the settings
#: field that lists them.
COMPONENT_FIELDS = {"flags": "flags", "config": "paths", "database": "databases", "infrastructure": "terraform"}


@dataclass
class Selection:
    """What ``rollback_components`` leaves of a host's settings: the narrowed settings, the positions of
    the entries kept in each configured list, and the selectors that named nothing here."""

    settings: Any  # plan.HostSettings
    indexes: Dict[str, List[int]]
    unmatched: List[str]


def component_name(layer: str, entry: Any) -> str:
    """The name a layer's entry is shown and selected by (a database ``engine/database``, a Terraform
    project ``workspace@name``, a flag set ``file:<path>``/``etcd:<prefix>``, a managed path itself)."""
    if layer == "database":
        return database_name(entry)
    if layer == "infrastructure":
        return terraform_name(entry)
    if layer == "flags":
        return flags_name(entry)
    return os.path.normpath(str(entry))


def _canonical_selector(selector: str, layer: str) -> str:
    """A database selector with the engine's own name (``mariadb/shop`` -> ``mysql/shop``)."""
    engine, slash, database = selector.partition("/")
    return canonical_engine(engine) + slash + database if layer == "database" and engine else selector


def _selected(selector: str, layer: str, entry: Any) -> bool:
    if _canonical_selector(selector, layer) == component_name(layer, entry):
        return True
    if isinstance(entry, dict):
        aliases = [entry.get("name"), entry.get("database"), entry.get("project_path"), entry.get("path"),
                   entry.get("etcd_prefix")]
        return selector in [str(alias) for alias in aliases if alias]
    return False


def select_components(settings: Any, components: Any) -> Selection:
    """Keep only the components ``components`` names (``rollback_components``; empty: everything).

    A selector names a database (``postgresql/app``, or the entry's ``database`` or ``name``), a Terraform
    project (``default@infra``, its ``name`` or ``project_path``), a release root (``/srv/app``), a flag set
    (``file:/etc/shop/flags.json``, its ``path`` or ``etcd_prefix``) or a managed path (``/etc/app``).
    Every layer keeps the entries named and nothing else: a layer with none is left out.
    """
    selectors = layer_list(components)
    everything = {layer: list(range(len(getattr(settings, name)))) for layer, name in COMPONENT_FIELDS.items()}
    if not selectors:
        return Selection(settings, everything, [])
    indexes = {layer: [index for index in everything[layer]
                       if any(_selected(s, layer, getattr(settings, name)[index]) for s in selectors)]
               for layer, name in COMPONENT_FIELDS.items()}
    root = os.path.normpath(settings.release_root) if settings.release_root else ""
    keep_release = bool(root) and root in [os.path.normpath(s) for s in selectors]
    narrowed = replace(settings, release_root=settings.release_root if keep_release else "",
                       **{name: [getattr(settings, name)[index] for index in indexes[layer]]
                          for layer, name in COMPONENT_FIELDS.items()})
    unmatched = [s for s in selectors
                 if not any(_selected(s, layer, entry) for layer, name in COMPONENT_FIELDS.items()
                            for entry in getattr(narrowed, name)) and not (keep_release and os.path.normpath(s) == root)]
    return Selection(narrowed, indexes, unmatched)
