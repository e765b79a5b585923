# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Feature flags, the fastest rollback: capture a flag set into a checkpoint, put it back, turn flags off.

A backend reads the flags as a :class:`Snapshot` (the exact document that is stored, and the flags
decoded from it for display and comparison) and writes one back. Two backends:

- :class:`FileFlags`: a JSON (or YAML) flags file on the host, stored byte for byte with its mode
  and owner, written back atomically: a new file created beside it (``O_EXCL|O_NOFOLLOW`` from the
  directory's descriptor, opened component by component without following a link), fsynced and
  renamed over it.
- :class:`EtcdFlags`: the keys under a prefix of an etcd v3 cluster, through its JSON gateway
  (Ansible's ``open_url``), stored with their exact bytes; written back in one transaction that
  first compares every key's revision with what was read, so a change made meanwhile is never
  overwritten unseen.

Adding a backend: a class with ``kind``, ``component_name``, ``read() -> Snapshot``,
``decode(document) -> Snapshot``, ``turned_off(current, names)`` and ``write(target, current)``, and
its options in :func:`backend_from`; see docs/feature-flags.md.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..common.errors import RollbackError
from ..store.manifest import Component
from ..common.nofollow import lstat_at, open_root, read_small, write_file_at
from .flag_names import component_name

if TYPE_CHECKING:
    from ..store.store import Store

COMPONENT_TYPE = "flags"
MAX_FILE = 4 * 1024 * 1024
OFF_FILE_VALUE = False
OFF_ETCD_VALUE = b"false"


class FlagsError(RollbackError):
    """Flags that cannot be read, found or written; nothing was changed."""


@dataclass
class Snapshot:
    """A flag set: the stored document (exact bytes) and the flags decoded from it."""

    document: bytes
    flags: Dict[str, Any]
    meta: Dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- file


class FileFlags:
    """A flags file: a JSON object (``.json``) or a YAML mapping (``.yml``/``.yaml``) of flag -> value."""

    kind = "file"

    def __init__(self, path: str) -> None:
        if not os.path.isabs(path) or path.endswith("/"):
            raise FlagsError("path %r must be the absolute path of the flags file." % (path,))
        self.path = os.path.normpath(path)
        self.folder, self.name = os.path.split(self.path)
        self.yaml = self.name.endswith((".yml", ".yaml"))

    @property
    def component_name(self) -> str:
        """The component's name in a checkpoint."""
        return component_name({"backend": "file", "path": self.path})

    def read(self) -> Snapshot:
        """Read the file (never through a link) with its mode and owner."""
        dir_fd = self._open_folder()
        try:
            try:
                st = lstat_at(dir_fd, self.name)
            except FileNotFoundError:
                raise FlagsError("There is no flags file %s on this host. Create it, or name the file your "
                                 "application reads." % self.path) from None
            if not stat.S_ISREG(st.st_mode):
                raise FlagsError("%s is not a regular file (a link or something else): refusing to read or "
                                 "replace it. Point path at the real flags file." % self.path)
            data = read_small(dir_fd, self.name, MAX_FILE)
            if data is None:
                raise FlagsError("%s changed while it was read, or is larger than %d bytes." % (self.path, MAX_FILE))
        finally:
            os.close(dir_fd)
        snapshot = self.decode(data)
        snapshot.meta = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
        return snapshot

    def decode(self, document: bytes) -> Snapshot:
        """The flags of a file's bytes; refuses what is not a mapping."""
        try:
            flags = _load_yaml(document) if self.yaml else json.loads(document.decode("utf-8"))
        except ValueError as exc:
            raise FlagsError("%s is not valid %s: %s" % (self.path, "YAML" if self.yaml else "JSON", exc)) from None
        if not isinstance(flags, dict):
            raise FlagsError("%s must hold a mapping of flag names to values." % self.path)
        return Snapshot(document, flags)

    def encode(self, flags: Dict[str, Any]) -> bytes:
        """The bytes of a flags mapping in this file's format."""
        if self.yaml:
            return _dump_yaml(flags)
        return (json.dumps(flags, indent=2) + "\n").encode("utf-8")

    def turned_off(self, current: Snapshot, names: Sequence[str]) -> Snapshot:
        """The flags with ``names`` set to false."""
        _check_known(current, names)
        flags = dict(current.flags)
        flags.update({name: OFF_FILE_VALUE for name in names})
        return Snapshot(self.encode(flags), flags, dict(current.meta))

    def write(self, target: Snapshot, current: Snapshot) -> None:
        """Replace the file with ``target``'s bytes, mode and owner, atomically, following no link."""
        meta = target.meta or current.meta
        owner = (meta["uid"], meta["gid"]) if meta and os.geteuid() == 0 else None
        dir_fd = self._open_folder()
        try:
            write_file_at(dir_fd, self.name, target.document, meta.get("mode", 0o644) if meta else 0o644, owner)
        finally:
            os.close(dir_fd)

    def _open_folder(self) -> int:
        try:
            return open_root(self.folder)
        except FileNotFoundError:
            raise FlagsError("The directory of the flags file, %s, does not exist on this host." % self.folder) from None


def _require_yaml() -> Any:
    """PyYAML, imported here: only YAML flags files need it on the host (and its import costs each module start)."""
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise FlagsError("A YAML flags file needs PyYAML on the managed host (pip install pyyaml, or the "
                         "python3-yaml package); or keep the flags as JSON.") from None
    return yaml


def _load_yaml(document: bytes) -> Any:
    yaml = _require_yaml()
    try:
        return yaml.safe_load(document.decode("utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def _dump_yaml(flags: Dict[str, Any]) -> bytes:
    yaml = _require_yaml()
    return yaml.safe_dump(flags, default_flow_style=False, sort_keys=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------- etcd


@dataclass
class EtcdConnection:
    """Where and how to reach etcd's v3 JSON gateway."""

    endpoints: List[str]
    user: Optional[str] = None
    password: Optional[str] = None
    ca_cert: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None
    timeout: float = 10.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Optional[str]) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key after every key that starts with ``prefix`` (etcd's range_end)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"  # every key
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class EtcdFlags:
    """The keys under a prefix of an etcd cluster, one flag per key."""

    kind = "etcd"

    def __init__(self, connection: EtcdConnection, prefix: str) -> None:
        if not prefix or not connection.endpoints:
            raise FlagsError("etcd flags need endpoints and a non-empty prefix (e.g. /flags/shop/).")
        self.connection = connection
        self.prefix = prefix.encode("utf-8")
        self._token: Optional[str] = None

    @property
    def component_name(self) -> str:
        """The component's name in a checkpoint."""
        return component_name({"backend": "etcd", "etcd_prefix": self.prefix.decode("utf-8")})

    def read(self) -> Snapshot:
        """Every key under the prefix with its value and revision."""
        answer = self._call("/v3/kv/range", {"key": _b64(self.prefix), "range_end": _b64(prefix_end(self.prefix))})
        pairs = sorted((_unb64(kv.get("key")), _unb64(kv.get("value")), int(kv.get("mod_revision", 0)))
                       for kv in answer.get("kvs", []))
        snapshot = self.decode(json.dumps({"kvs": [[_b64(k), _b64(v)] for k, v, _rev in pairs]}).encode("ascii"))
        snapshot.meta = {"revision": int(answer.get("header", {}).get("revision", 0))}
        return snapshot

    def decode(self, document: bytes) -> Snapshot:
        """The flags of a stored document: the key after the prefix -> the value (text; undecodable bytes escaped)."""
        try:
            pairs = [(_unb64(k), _unb64(v)) for k, v in json.loads(document.decode("ascii"))["kvs"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise FlagsError("The stored etcd flags are not a flag set (%s)." % exc) from None
        return Snapshot(document, {self._name(k): v.decode("utf-8", "backslashreplace") for k, v in pairs})

    def _name(self, key: bytes) -> str:
        return (key[len(self.prefix):] if key.startswith(self.prefix) else key).decode("utf-8", "backslashreplace")

    def turned_off(self, current: Snapshot, names: Sequence[str]) -> Snapshot:
        """The flags ``names`` (keys after the prefix) set to ``false``."""
        _check_known(current, names)
        pairs = dict((_unb64(k), _unb64(v)) for k, v in json.loads(current.document.decode("ascii"))["kvs"])
        for name in names:
            pairs[self.prefix + name.encode("utf-8")] = OFF_ETCD_VALUE
        return self.decode(json.dumps({"kvs": [[_b64(k), _b64(v)] for k, v in sorted(pairs.items())]}).encode("ascii"))

    def write(self, target: Snapshot, current: Snapshot) -> None:
        """Make the keys under the prefix exactly ``target``'s, in one transaction that applies only if no
        key under the prefix was written since ``current`` was read."""
        wanted = dict(json.loads(target.document.decode("ascii"))["kvs"])
        have = dict(json.loads(current.document.decode("ascii"))["kvs"])
        compare = [{"key": _b64(self.prefix), "range_end": _b64(prefix_end(self.prefix)), "target": "MOD",
                    "result": "LESS", "mod_revision": str(int(current.meta.get("revision", 0)) + 1)}]
        success = [{"request_put": {"key": key, "value": value}} for key, value in sorted(wanted.items())
                   if have.get(key) != value]
        success += [{"request_delete_range": {"key": key}} for key in sorted(set(have) - set(wanted))]
        answer = self._call("/v3/kv/txn", {"compare": compare, "success": success})
        if not answer.get("succeeded"):
            raise FlagsError("The flags under %s changed while they were being restored; nothing was written. "
                             "Run again (the flags are read anew)." % self.prefix.decode("utf-8", "backslashreplace"))

    def _call(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        # Ansible's HTTP code (and the TLS and x509 code it loads) only when etcd is asked: its import costs
        # every module start that imports this file.
        from urllib.error import URLError  # pylint: disable=import-outside-toplevel
        from ansible.module_utils.urls import (  # pylint: disable=import-outside-toplevel
            ConnectionError as UrlConnectionError, SSLValidationError)
        problems = []
        for endpoint in self.connection.endpoints:
            try:
                return self._post(endpoint, path, body)
            except (URLError, OSError, ValueError, UrlConnectionError, SSLValidationError) as exc:
                problems.append("%s: %s" % (endpoint, getattr(exc, "reason", exc)))
        raise FlagsError("No etcd endpoint answered (%s). Check endpoints, TLS and credentials; nothing was changed."
                         % "; ".join(problems))

    def _post(self, endpoint: str, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel  # see _call
        headers = {"Content-Type": "application/json"}
        if self.connection.user and path != "/v3/auth/authenticate":
            headers["Authorization"] = self._authenticate(endpoint)
        response = open_url(endpoint.rstrip("/") + path, data=json.dumps(body).encode("utf-8"), headers=headers,
                            method="POST", timeout=self.connection.timeout, use_proxy=False,
                            ca_path=self.connection.ca_cert, client_cert=self.connection.client_cert,
                            client_key=self.connection.client_key)
        try:
            return json.loads(response.read().decode("utf-8"))
        finally:
            response.close()

    def _authenticate(self, endpoint: str) -> str:
        if self._token is None:
            answer = self._post(endpoint, "/v3/auth/authenticate",
                                {"name": self.connection.user, "password": self.connection.password or ""})
            self._token = str(answer.get("token", ""))
        return self._token


def _check_known(current: Snapshot, names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in current.flags]
    if unknown:
        raise FlagsError("No flag named %s here; the flags are: %s. Nothing was changed." % (
            ", ".join(repr(name) for name in unknown), ", ".join(sorted(current.flags)) or "none"))


# ---------------------------------------------------------------------------------------------- operations


def backend_from(entry: Dict[str, Any]) -> Any:
    """The backend a flag set's options describe (the feature_flags module's, an inventory entry's)."""
    backend = entry.get("backend") or "file"
    if backend == "file":
        if not entry.get("path"):
            raise FlagsError("backend=file needs path: the flags file on the host.")
        return FileFlags(str(entry["path"]))
    if backend != "etcd":
        raise FlagsError("backend %r is not a flags backend (file or etcd)." % (backend,))
    connection = EtcdConnection(list(entry.get("etcd_endpoints") or []), entry.get("etcd_user"),
                                entry.get("etcd_password"), entry.get("etcd_ca_cert"), entry.get("etcd_client_cert"),
                                entry.get("etcd_client_key"), float(entry.get("etcd_timeout") or 10))
    return EtcdFlags(connection, str(entry.get("etcd_prefix") or ""))


@dataclass
class FlagsRequest:
    """One flags operation on one host."""

    backend: Any
    store: Store
    owner: str
    checkpoint: Optional[str] = None
    names: Sequence[str] = ()
    reason: Optional[str] = None
    lock_timeout: float = 0.0
    check_mode: bool = False
    #: A label: before writing, the flags as they are go into this checkpoint (a safety checkpoint).
    safety_checkpoint: Optional[str] = None


def changes(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The flags whose value differs: name -> {"before", "after"} (absent: None)."""
    return {name: {"before": before.get(name), "after": after.get(name)}
            for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name) or
            (name in before) != (name in after)}


def _component(request: FlagsRequest, snapshot: Snapshot, sha: str) -> Component:
    return Component(COMPONENT_TYPE, request.backend.component_name, [sha],
                     {"backend": request.backend.kind, "count": len(snapshot.flags), "meta": snapshot.meta
                      if request.backend.kind == "file" else {}})


def capture(request: FlagsRequest) -> Dict[str, Any]:
    """Store the current flags as a component of the checkpoint ``request.checkpoint`` (made when new)."""
    current = request.backend.read()
    store = request.store
    recorded = store.find_manifest_optional(request.checkpoint) if store.exists() else None
    found = recorded.component(COMPONENT_TYPE, request.backend.component_name) if recorded else None
    result = {"changed": False, "flags": current.flags,
              "checkpoint": {"id": recorded.id if recorded else None, "label": request.checkpoint}}
    if found is not None and found.blobs == [store.hash_bytes(current.document)] and \
            found.get("meta") == _component(request, current, "").get("meta"):
        return result
    result["changed"] = True
    if request.check_mode:
        return result
    result["checkpoint"] = _store(request, request.checkpoint or "", current, request.reason or "flags checkpointed")
    return result


def _store(request: FlagsRequest, label: str, snapshot: Snapshot, reason: str) -> Dict[str, Any]:
    """Attach ``snapshot`` to the checkpoint ``label`` (made when new), under the store's lock."""
    store = request.store
    store.init()
    with store.lock(request.owner, reason, request.lock_timeout):
        wanted = _component(request, snapshot, store.put_bytes(snapshot.document))
        manifest = store.find_optional(label)
        if manifest is None:
            manifest = store.new_manifest(label=label, reason=reason, creator=request.owner)
        store.attach_component(manifest, wanted.to_json())
    return {"id": manifest["id"], "label": manifest.get("label")}


def stored_flags(request: FlagsRequest) -> Tuple[Snapshot, Dict[str, Any]]:
    """The flag set a checkpoint holds for this backend, and the checkpoint's id and label."""
    manifest = request.store.find_manifest(request.checkpoint or "")
    found = manifest.component(COMPONENT_TYPE, request.backend.component_name)
    if found is None or len(found.blobs) != 1:
        held = [c.name for c in manifest.components_of(COMPONENT_TYPE)]
        raise FlagsError("Checkpoint %s holds no flags of %s (it holds flags of: %s). Nothing was changed." % (
            manifest.shown_label, request.backend.component_name, ", ".join(held) or "none"))
    snapshot = request.backend.decode(request.store.read_blob(found.blobs[0]))
    snapshot.meta = dict(found.get("meta") or {})
    return snapshot, {"id": manifest.id, "label": manifest.label}


def restore(request: FlagsRequest) -> Dict[str, Any]:
    """Put back the flags a checkpoint holds."""
    target, checkpoint = stored_flags(request)
    return _apply(request, target, dict(checkpoint=checkpoint))


def turn_off(request: FlagsRequest) -> Dict[str, Any]:
    """Set the flags ``request.names`` to false."""
    if not request.names:
        raise FlagsError("state=off needs names: the flags to turn off.")
    return _apply(request, None, {})


def restore_when_unhealthy(request: FlagsRequest, evaluate: Callable[[], Any]) -> Dict[str, Any]:
    """Evaluate a health gate; the moment it fails, put the flags back (or turn ``names`` off) in this process.

    The first response of the guard: no task, connection or process lies between the failing
    measurement and the write. ``evaluate`` returns the gate's evaluation (``health.analysis.Evaluation``);
    the flags are left alone for any other verdict. Keys: ``gate`` (the evaluation), ``responded``
    (the flags were put back), ``responded_at`` (epoch seconds) and what the restore returns.
    """
    evaluation = evaluate()
    result: Dict[str, Any] = {"changed": False, "gate": evaluation.as_dict(), "responded": False}
    if evaluation.verdict != "fail":
        return result
    result.update(turn_off(request) if request.names else restore(request))
    result.update(responded=True, responded_at=round(time.time(), 3))
    return result


def _apply(request: FlagsRequest, target: Optional[Snapshot], extra: Dict[str, Any]) -> Dict[str, Any]:
    current = request.backend.read()
    if target is None:
        target = request.backend.turned_off(current, request.names)
    delta = changes(current.flags, target.flags)
    same_meta = not target.meta or not current.meta or target.meta == current.meta
    changed = bool(delta) or current.document != target.document or not same_meta
    if changed and not request.check_mode:
        if request.safety_checkpoint:
            extra["safety_checkpoint"] = _store(request, request.safety_checkpoint, current,
                                                "safety checkpoint of the flags before they change")
        request.backend.write(target, current)
    return dict(extra, changed=changed, flags=target.flags, changes=delta,
                diff={"before": _shown(current.flags), "after": _shown(target.flags)})


def _shown(flags: Dict[str, Any]) -> str:
    return json.dumps(flags, indent=2, sort_keys=True, default=str) + "\n"
