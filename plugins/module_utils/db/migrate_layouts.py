# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration directory layouts: this collection's own, golang-migrate, dbmate and Flyway.

Each layout names its files differently; all of them become the same :class:`Migration` (a
version, a name, an up script and an optional down script). ``auto`` picks the one layout every
``.sql`` file of the directory fits (see docs/migrations.md). Markers in a script's leading
comment lines: ``-- gitops-rollback: irreversible`` (up script) and
``-- gitops-rollback: no-transaction`` (either script; dbmate's ``transaction:false`` too).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..common.errors import RollbackError

LAYOUTS = ("auto", "gitops", "golang-migrate", "dbmate", "flyway")
IRREVERSIBLE_MARK = "-- gitops-rollback: irreversible"
NO_TRANSACTION_MARK = "-- gitops-rollback: no-transaction"

GITOPS_RE = re.compile(r"^V(\d+)__(.+)\.(up|down)\.sql\Z")
GOLANG_RE = re.compile(r"^(\d+)_(.+)\.(up|down)\.sql\Z")
DBMATE_RE = re.compile(r"^(\d+)(?:_(.+))?\.sql\Z")
FLYWAY_RE = re.compile(r"^([VU])(\d+(?:[._]\d+)*)__(.+)\.sql\Z")
FLYWAY_REPEATABLE_RE = re.compile(r"^R__.+\.sql\Z")
FLYWAY_PARTS = 4
FLYWAY_PART_LIMIT = 10000
FLYWAY_FIRST_LIMIT = 9223372  # the packed key stays below 2^63 (a signed 64-bit history column)
DBMATE_MARK_RE = re.compile(r"^--\s*migrate:(up|down)(?:\s+(.*))?$")
EXAMPLES = {
    "gitops": "V0001__create_users.up.sql and V0001__create_users.down.sql",
    "golang-migrate": "000001_create_users.up.sql and 000001_create_users.down.sql",
    "dbmate": "20260101120000_create_users.sql with -- migrate:up and -- migrate:down sections",
    "flyway": "V1__create_users.sql and its undo U1__create_users.sql",
}


@dataclass
class Migration:
    """One migration as found in the directory."""

    version: int
    name: str
    up_path: str
    up_sql: str
    checksum: str
    down_path: Optional[str] = None
    down_sql: Optional[str] = None
    down_checksum: Optional[str] = None
    #: The version as the file name writes it, when it is not the number itself (Flyway's ``1.2.3``).
    version_text: str = ""

    @property
    def marked_irreversible(self) -> bool:
        """Tell whether the up script's leading comments mark it irreversible on purpose."""
        return IRREVERSIBLE_MARK in header_lines(self.up_sql)

    @property
    def irreversible(self) -> bool:
        return self.down_sql is None or self.marked_irreversible

    @property
    def label(self) -> str:
        if self.version_text:
            return "V%s__%s" % (self.version_text, self.name)
        return "V%04d__%s" % (self.version, self.name)

    def files(self) -> List[str]:
        """Return the file names of this migration (once each)."""
        names = [os.path.basename(self.up_path)]
        if self.down_path and os.path.basename(self.down_path) not in names:
            names.append(os.path.basename(self.down_path))
        return names


@dataclass
class Folder:
    """What a migrations directory holds, read with one layout."""

    layout: str
    migrations: List[Migration] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)


def sha256_text(data: bytes) -> str:
    """Return the SHA-256 hex digest of bytes."""
    return hashlib.sha256(data).hexdigest()


def header_lines(sql: Optional[str]) -> List[str]:
    """Return the leading comment lines of a script, stripped and lower-cased."""
    found = []
    for line in (sql or "").lstrip("\ufeff").splitlines():
        text = line.strip()
        if not text:
            continue
        if not text.startswith("--"):
            break
        found.append(re.sub(r"\s+", " ", text.lower()))
    return found


def wants_transaction(sql: Optional[str]) -> bool:
    """Tell whether a script may run in a transaction (no no-transaction marker in its header)."""
    for line in header_lines(sql):
        if line == NO_TRANSACTION_MARK:
            return False
        mark = DBMATE_MARK_RE.match(line)
        if mark and "transaction:false" in (mark.group(2) or "").replace(" ", ""):
            return False
    return True


def has_statements(sql: str) -> bool:
    """Tell whether a script holds anything but blank and ``--`` comment lines."""
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


def _read(path: str) -> bytes:
    """Read a migration file, never through a link planted in its place (it runs as SQL, often as root);
    opened without blocking and read only when it is a regular file (a FIFO swapped in never hangs the run)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise RollbackError("%s is a symbolic link; migration files are read only as regular files. Replace "
                                "the link with the file it points to. Nothing was run." % path) from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RollbackError("%s is not a regular file; migration files are read only as regular files. "
                                "Nothing was run." % path)
        return handle.read()


def _text_of(path: str, data: bytes) -> str:
    """Decode a migration file as UTF-8, or say which file is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RollbackError("%s is not UTF-8 text (%s). Save it as UTF-8." % (path, exc)) from exc


# ----------------------------------------------------------------------------- detection
def _fits(layout: str, directory: str, entry: str) -> bool:
    """Tell whether a file name fits a layout (dbmate files must also hold ``-- migrate:up``)."""
    if layout == "gitops":
        return bool(GITOPS_RE.match(entry))
    if layout == "golang-migrate":
        return bool(GOLANG_RE.match(entry))
    if layout == "flyway":
        return bool(FLYWAY_RE.match(entry) or FLYWAY_REPEATABLE_RE.match(entry))
    if not DBMATE_RE.match(entry):
        return False
    try:
        text = _read(os.path.join(directory, entry)).decode("utf-8", "replace")
    except OSError:
        return False
    return any(DBMATE_MARK_RE.match(line.strip().lower()) for line in text.splitlines())


def sql_files(directory: str) -> List[str]:
    """Return the ``.sql`` file names of a directory, sorted."""
    return sorted(entry for entry in os.listdir(directory)
                  if entry.endswith(".sql") and os.path.isfile(os.path.join(directory, entry)))


def detect_layout(directory: str, entries: List[str]) -> str:
    """Return the one layout all ``entries`` fit, or refuse naming a file that fits none."""
    if not entries:
        return "gitops"
    for layout in ("gitops", "golang-migrate", "flyway", "dbmate"):
        if all(_fits(layout, directory, entry) for entry in entries):
            return layout
    order = ("gitops", "golang-migrate", "flyway", "dbmate")
    best = max(order, key=lambda layout: (sum(_fits(layout, directory, e) for e in entries), -order.index(layout)))
    odd = [entry for entry in entries if not _fits(best, directory, entry)]
    raise RollbackError(
        "%s in %s is not named as the %s layout expects (%s), which the other .sql files there follow. Rename "
        "it (no other .sql files are allowed there, so a typo cannot skip a migration), or set layout."
        % (", ".join(odd[:5]), directory, best, EXAMPLES[best]))


# ----------------------------------------------------------------------------- reading
def read_folder(directory: str, layout: str = "auto") -> Folder:
    """Read every migration of ``directory`` in ``layout`` (``auto``: detected), sorted by version."""
    if layout not in LAYOUTS:
        raise RollbackError("Unknown migration layout %r (choose from %s)." % (layout, ", ".join(LAYOUTS)))
    if not os.path.isdir(directory):
        raise RollbackError("The migrations directory %s does not exist on %s. Point migrations_dir at a "
                            "checkout of your migrations." % (directory, socket.gethostname()))
    entries = sql_files(directory)
    chosen = detect_layout(directory, entries) if layout == "auto" else layout
    folder = Folder(chosen)
    for entry in entries:
        if not _fits(chosen, directory, entry):
            raise RollbackError("%s in %s is not named as the %s layout expects (%s). Rename it, or set layout to "
                                "the layout of this directory." % (entry, directory, chosen, EXAMPLES[chosen]))
    readers: Dict[str, Callable[[str, List[str], Folder], None]] = {
        "gitops": _read_pairs, "golang-migrate": _read_pairs, "flyway": _read_flyway, "dbmate": _read_dbmate}
    readers[chosen](directory, entries, folder)
    folder.migrations.sort(key=lambda m: m.version)
    return folder


def _match(pattern: "re.Pattern[str]", entry: str) -> "re.Match[str]":
    """Match a file name already checked by read_folder."""
    match = pattern.match(entry)
    if match is None:
        raise RollbackError("%s does not fit the layout it was read with." % entry)
    return match


def _add(found: Dict[int, Migration], migration: Migration, directory: str) -> None:
    """Add an up migration; refuse a version that appears twice."""
    other = found.get(migration.version)
    if other is not None:
        raise RollbackError("Version %s appears twice in %s (%s and %s). Give one of them a new version."
                            % (migration.version_text or migration.version, directory, os.path.basename(other.up_path),
                               os.path.basename(migration.up_path)))
    found[migration.version] = migration


def _pair_downs(found: Dict[int, Migration], downs: List[Tuple[int, str, str, bytes]], directory: str,
                up_name: Callable[[int, str], str]) -> None:
    """Attach each down (undo) file to the up file of the same version and name."""
    for version, name, path, data in downs:
        migration = found.get(version)
        if migration is None or migration.name != name:
            raise RollbackError("%s has no matching up file %s in %s. Rename or remove it."
                                % (os.path.basename(path), up_name(version, name), directory))
        migration.down_path, migration.down_sql = path, _text_of(path, data)
        migration.down_checksum = sha256_text(data)


def _read_pairs(directory: str, entries: List[str], folder: Folder) -> None:
    """This collection's layout and golang-migrate's: one up and one down file per version."""
    pattern = GITOPS_RE if folder.layout == "gitops" else GOLANG_RE
    found: Dict[int, Migration] = {}
    downs = []
    for entry in entries:
        match = _match(pattern, entry)
        version, name, direction = int(match.group(1)), match.group(2), match.group(3)
        path = os.path.join(directory, entry)
        data = _read(path)
        if direction == "down":
            downs.append((version, name, path, data))
        else:
            _add(found, Migration(version, name, path, _text_of(path, data), sha256_text(data)), directory)
    if folder.layout == "gitops":
        _pair_downs(found, downs, directory, lambda v, n: "V%s__%s.up.sql" % (v, n))
    else:
        _pair_downs(found, downs, directory, lambda v, n: "<%d>_%s.up.sql" % (v, n))
    folder.migrations = list(found.values())


def flyway_key(raw: str, where: str = "") -> int:
    """Return the number a Flyway version (``7``, ``1.2.3``, ``1_2`` = 1.2) is ordered and recorded by.

    Its parts, compared as numbers as Flyway does (1.10 after 1.9; 1.0 is 1), packed as decimal digit
    groups: the first part times 10^12, the second times 10^8, the third times 10^4, plus the fourth
    (``1.2.3`` is 1000200030000), so the history's 64-bit ``version`` column orders them as Flyway does.
    """
    parts = [int(part) for part in re.split(r"[._]", raw.strip().lstrip("Vv")) if part != ""] \
        if re.match(r"^[Vv]?\d+(?:[._]\d+)*$", raw.strip()) else []
    if not parts or len(parts) > FLYWAY_PARTS or parts[0] >= FLYWAY_FIRST_LIMIT \
            or any(part >= FLYWAY_PART_LIMIT for part in parts[1:]):
        raise RollbackError(
            "%sFlyway version %s is out of range: db_migrate takes up to %d numeric parts, the first below %d and the "
            "others below %d (1, 1.2, 1.2.3, 2026.11.21.1430). Rename it (a 14-digit timestamp fits the dbmate or "
            "golang-migrate layout)." % (where, raw, FLYWAY_PARTS, FLYWAY_FIRST_LIMIT, FLYWAY_PART_LIMIT))
    parts += [0] * (FLYWAY_PARTS - len(parts))
    key = 0
    for part in parts:
        key = key * FLYWAY_PART_LIMIT + part
    return key


def flyway_text(key: int) -> str:
    """Return the Flyway version a key stands for (``1.2.3``; trailing zero parts left out)."""
    parts = []
    for _index in range(FLYWAY_PARTS):
        key, part = divmod(key, FLYWAY_PART_LIMIT)
        parts.insert(0, part)
    parts[0] += key * FLYWAY_PART_LIMIT
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return ".".join(str(part) for part in parts)


def _read_flyway(directory: str, entries: List[str], folder: Folder) -> None:
    """Flyway: V<version>__<name>.sql applies, U<version>__<name>.sql undoes (the version may have dotted or
    underscored parts, ordered numerically); R__ files are repeatable (ignored)."""
    found: Dict[int, Migration] = {}
    downs = []
    for entry in entries:
        if FLYWAY_REPEATABLE_RE.match(entry):
            folder.ignored.append("%s: a Flyway repeatable migration; db_migrate runs versioned migrations only, so "
                                  "it was not run (apply it yourself, or make it a versioned migration)." % entry)
            continue
        match = _match(FLYWAY_RE, entry)
        kind, raw, name = match.group(1), match.group(2), match.group(3)
        key = flyway_key(raw, "%s in %s: " % (entry, directory))
        path = os.path.join(directory, entry)
        data = _read(path)
        if kind == "U":
            downs.append((key, name, path, data))
        else:
            _add(found, Migration(key, name, path, _text_of(path, data), sha256_text(data),
                                  version_text=flyway_text(key)), directory)
    _pair_downs(found, downs, directory, lambda v, n: "V%s__%s.sql" % (flyway_text(v), n))
    folder.migrations = list(found.values())


def dbmate_sections(text: str, where: str) -> Tuple[str, Optional[str]]:
    """Split a dbmate file into its up and down sections (each from its marker line on)."""
    lines = text.splitlines(keepends=True)
    marks = [(index, DBMATE_MARK_RE.match(line.strip().lower()).group(1))  # type: ignore[union-attr]
             for index, line in enumerate(lines) if DBMATE_MARK_RE.match(line.strip().lower())]
    kinds = [kind for _index, kind in marks]
    if kinds.count("up") != 1 or kinds.count("down") > 1:
        raise RollbackError("%s needs exactly one '-- migrate:up' line and at most one '-- migrate:down' line "
                            "(found %d and %d)." % (where, kinds.count("up"), kinds.count("down")))
    if has_statements("".join(lines[:marks[0][0]])):
        raise RollbackError("%s has SQL before its first '-- migrate:' line. Move it into the up or down section."
                            % where)
    sections: Dict[str, str] = {}
    for number, (index, kind) in enumerate(marks):
        end = marks[number + 1][0] if number + 1 < len(marks) else len(lines)
        sections[kind] = "".join(lines[index:end])
    return sections["up"], sections.get("down")


def _read_dbmate(directory: str, entries: List[str], folder: Folder) -> None:
    """dbmate: one file per version with ``-- migrate:up`` and ``-- migrate:down`` sections."""
    found: Dict[int, Migration] = {}
    for entry in entries:
        match = _match(DBMATE_RE, entry)
        path = os.path.join(directory, entry)
        up, down = dbmate_sections(_text_of(path, _read(path)), "%s in %s" % (entry, directory))
        if down is not None and not has_statements(down):
            down = None  # an empty down section: nothing can revert it
        migration = Migration(int(match.group(1)), match.group(2) or match.group(1), path, up,
                              sha256_text(up.encode("utf-8")))
        if down is not None:
            migration.down_path, migration.down_sql = path, down
            migration.down_checksum = sha256_text(down.encode("utf-8"))
        _add(found, migration, directory)
    folder.migrations = list(found.values())
