# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The row counter reading mariadb-dump output: tricky values, both row layouts, any chunking."""

from __future__ import annotations

import os
import random
import sys

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db.streams import DumpStream
from ansible_collections.gitops.rollback.plugins.module_utils.db.sqlrows import RowCounter
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import CommandError
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

_ESCAPES = {0: b"\\0", 10: b"\\n", 13: b"\\r", 92: b"\\\\", 39: b"\\'", 34: b'\\"', 26: b"\\Z"}

TRICKY_VALUES = [
    "it's", "'", "''", "\\", "\\'", "a\\\\'b", "),(", "(", ")", ";", ");\nINSERT INTO `x` VALUES (1);", "",
    "Ünïcødé ✓ 客户", "line\nbreak\r\n", "tab\there", "0x41", "NULL", "--", "/* not a comment */", "DELIMITER ;;",
    b"\x00\x01\x02'\\\x1a\xff\xfe(),;\n".decode("latin-1"),
]
BINARY = bytes(range(256)) * 3


def quote(value) -> bytes:
    """Quote a value the way the dump clients do (mysql_real_escape_string)."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    return b"'" + b"".join(_ESCAPES.get(byte, bytes([byte])) for byte in raw) + b"'"


def row(values) -> bytes:
    """One row as the dump writes it."""
    parts = []
    for value in values:
        if value is None:
            parts.append(b"NULL")
        elif isinstance(value, int):
            parts.append(str(value).encode())
        elif isinstance(value, bytes) and value.startswith(b"0x"):
            parts.append(value)
        elif isinstance(value, bytes):
            parts.append(b"_binary " + quote(value))
        else:
            parts.append(quote(value))
    return b"(" + b",".join(parts) + b")"


def data_statement(table: str, rows, columns=None, per_line: bool = True) -> bytes:
    """An INSERT statement in the one-row-per-line layout (mariadb-dump >= 10.11) or on one line."""
    head = b"INSERT INTO `" + table.replace("`", "``").encode() + b"`"
    if columns:
        head += b" (" + b", ".join(b"`" + c.encode() + b"`" for c in columns) + b")"
    body = [row(r) for r in rows]
    if per_line:
        return head + b" VALUES\n" + b",\n".join(body) + b";\n"
    return head + b" VALUES " + b",".join(body) + b";\n"


def table_section(table: str, statements) -> bytes:
    name = table.replace("`", "``").encode()
    return (b"--\n-- Dumping data for table `" + name + b"`\n--\n\n"
            b"/*!40000 ALTER TABLE `" + name + b"` DISABLE KEYS */;\n" + b"".join(statements) +
            b"/*!40000 ALTER TABLE `" + name + b"` ENABLE KEYS */;\n")


def make_dump(per_line: bool = True) -> tuple:
    """Return (dump bytes, expected counts) with every kind of trap around the data."""
    tricky = [(i, text, BINARY[i:i + 40] if i % 2 else None, b"0x00FF27") for i, text in enumerate(TRICKY_VALUES)]
    many = [(i, "row %d" % i, None, b"0x%04X" % i) for i in range(1000)]
    parts = [
        b"/*M!999999\\- enable the sandbox mode */ \n",
        b"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\n",
        b"DROP TABLE IF EXISTS `t`;\nCREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `s` text COMMENT 'x;',\n",
        b"  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n",
        table_section("t", [data_statement("t", tricky[:9], per_line=per_line),
                            data_statement("t", tricky[9:], ["id", "s", "b", "h"], per_line=per_line)]),
        table_section("empty", []),
        b"DELIMITER ;;\n/*!50003 CREATE*/ /*!50003 TRIGGER tr AFTER INSERT ON t FOR EACH ROW\n",
        b"INSERT INTO `we``ird (x` VALUES (NEW.id) */;;\nDELIMITER ;\n",
        table_section("we`ird (x", [data_statement("we`ird (x", many[:600], per_line=per_line),
                                    data_statement("we`ird (x", many[600:], per_line=per_line)]),
        table_section("one", [data_statement("one", [(1, ")")], ["a", "b"], per_line=per_line)]),
        b"/*!50001 VIEW `v` AS select 'x\\nINSERT INTO' AS `a` */;\n",
        b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\n-- Dump completed on 2025-01-01\n",
    ]
    return b"".join(parts), {"t": len(tricky), "we`ird (x": 1000, "one": 1}


def count(data: bytes, cuts) -> RowCounter:
    counter = RowCounter()
    start = 0
    for cut in list(cuts) + [len(data)]:
        counter.feed(data[start:cut])
        start = cut
    return counter


@pytest.mark.parametrize("per_line", [True, False], ids=["row-per-line", "one-line"])
def test_counts_every_row_whatever_the_values(per_line: bool) -> None:
    data, expected = make_dump(per_line)
    counter = count(data, [])
    assert counter.finish() == expected, counter.failed


@pytest.mark.parametrize("per_line", [True, False], ids=["row-per-line", "one-line"])
def test_any_chunking_gives_the_same_counts(per_line: bool) -> None:
    data, expected = make_dump(per_line)
    small = data[:data.index(b"`empty`")]  # the tricky rows: cut at every byte
    small_expected = {"t": expected["t"]}
    for cut in range(1, len(small)):
        assert count(small, [cut]).finish() == small_expected, cut
    assert count(small, range(1, len(small))).finish() == small_expected
    rng = random.Random(7)
    for _attempt in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), 40))
        assert count(data, cuts).finish() == expected, cuts


@pytest.mark.parametrize("per_line", [True, False], ids=["row-per-line", "one-line"])
def test_a_reused_buffer_is_read_only_up_to_the_length_given(per_line: bool) -> None:
    data, expected = make_dump(per_line)
    rng = random.Random(11)
    for _attempt in range(10):
        cuts = sorted(rng.sample(range(1, len(data)), 60)) + [len(data)]
        buffer = bytearray(b");\n'(\\" * (len(data) // 5 + 1))  # stale bytes after each chunk: traps if read
        counter = RowCounter()
        start = 0
        for cut in cuts:
            buffer[:cut - start] = data[start:cut]
            counter.feed(buffer, cut - start)
            start = cut
        assert counter.finish() == expected, (cuts, counter.failed)


def test_a_dump_cut_inside_data_is_not_counted() -> None:
    data, _expected = make_dump()
    cut = data.index(b"(999,")
    counter = count(data[:cut], [])
    assert counter.finish() is None
    assert "ends inside a data statement" in counter.failed


@pytest.mark.parametrize("statement,why", [
    (b"INSERT INTO `t` VALUES (1)),(2);\n", "unbalanced ')'"),
    (b"INSERT INTO `t` VALUES\n(1),\n(2)\n;\n", "ends with b'2)'"),
    (b"INSERT INTO `t` VALUES (1,\n2);\n", "line break inside a row"),
    (b"INSERT INTO `t` VALUES (1;2);\n", "';' inside a row"),
])
def test_unreadable_data_makes_it_give_up_not_guess(statement: bytes, why: str) -> None:
    counter = count(b"/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n" + statement, [])
    assert counter.finish() is None
    assert why in counter.failed and "table 't'" in counter.failed


def test_an_empty_database_has_no_counts() -> None:
    assert count(b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n-- Dump completed\n", []).finish() == {}


def test_dump_stream_shows_every_byte_to_the_observer_in_both_modes(tmp_path) -> None:
    data, expected = make_dump()
    source = tmp_path / "dump.sql"
    source.write_bytes(data)
    store = Store(str(tmp_path / "store"))
    store.init()
    argv = [sys.executable, "-c", "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())", str(source)]
    for compressor, into_file in ((None, True), (None, False), (["gzip", "-c", "-1"], True)):
        counter = RowCounter()
        stream = DumpStream(store, argv, "test dump", compressor=compressor, observer=counter.feed, into_file=into_file)
        sha, size = stream.run()
        assert counter.finish() == expected
        assert bytes(stream.tail).endswith(b"-- Dump completed on 2025-01-01\n")
        if compressor is None:
            assert (sha, size) == (store.hash_bytes(data), len(data))
            assert store.read_blob(sha) == data


def test_a_dump_writing_its_file_is_stored_as_written_and_failures_leave_nothing(tmp_path) -> None:
    store = Store(str(tmp_path / "store"))
    store.init()
    seeking = [sys.executable, "-c", "import os, sys; os.write(1, b'first part;'); os.lseek(1, 0, 0); "
               "os.write(1, b'second')"]
    sha, size = DumpStream(store, seeking, "seeking dump", into_file=True).run()
    assert store.read_blob(sha) == b"first part;second" and size == 17  # appended: hashed bytes never change
    failing = [sys.executable, "-c", "import sys; sys.stdout.write('partial'); sys.stderr.write('boom'); sys.exit(3)"]
    with pytest.raises(CommandError) as caught:
        DumpStream(store, failing, "failing dump", into_file=True).run()
    assert "boom" in str(caught.value.details.get("stderr")) + str(caught.value)
    assert not [name for name in os.listdir(store.path("tmp")) if name.startswith(".blob")]
