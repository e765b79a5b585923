# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encrypted stores: a cold checkpoint against a plain one, and the AEAD against raw AES-GCM.

Figures:
- encrypted cold checkpoint (AES-256-GCM scheme) vs a plain cold checkpoint of the same tree
  (10,000 files / 200 MB, bench_checkpoint.py's tree), the real ``checkpoint`` module run as
  Ansible runs it, sides alternating, median of 3 after a warm-up; the same for a store of the
  first scheme (information); the CPU time (user and system, workers included) of the plain and
  encrypted runs, steadier than wall time on a loaded machine; peak memory of the encrypted checkpoint; with
  ``GITOPS_ROLLBACK_BENCH_BEFORE=<another checkout of the collection>``, the plain and encrypted cold
  checkpoints of that checkout too, in the same rounds (its encrypted vs plain ratio beside ours);
- encrypt and decrypt throughput (sides alternating, median of 7) of the store's envelopes (``Cipher.sealer`` / ``open_stream``)
  vs ``cryptography``'s raw ``AESGCM.encrypt`` / ``decrypt`` of the same 200 MB in the same
  1 MiB chunks under one key: the cost of the construction (per-envelope key, chunk framing,
  associated data, verify-final-first reading). Encryption runs from memory on both sides;
  decryption reads a file in the page cache on both sides (a hand-written readinto loop for raw);
- the same for 10,000 small envelopes (the tree's file sizes) vs one raw call per file;
- the key derivation (scrypt, once per module run) in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROUNDS = 3
BEFORE = os.environ.get("GITOPS_ROLLBACK_BENCH_BEFORE")
KEY = "bench-key-0123456789abcdef-crypto"


def _load(name: str):
    spec = importlib.util.spec_from_file_location("bench_" + name, HERE / ("bench_%s.py" % name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CP = _load("checkpoint")


def _crypto():
    """The collection's crypto modules, imported from this checkout."""
    collections = Path(os.environ.get("GR_BENCH_COLLECTIONS", "/tmp/gr-bench-crypto-collections"))
    link = collections / "ansible_collections" / "gitops" / "rollback"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(REPO)
    sys.path.insert(0, str(collections))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto as _crypto
    from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto_legacy as _crypto_legacy
    return _crypto, _crypto_legacy


def _best(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Median wall time of ``action`` over ``rounds`` runs after one warm-up."""
    action()
    times = []
    for _round in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return CP.median(times)


def _pair(ours: Callable[[], object], raw: Callable[[], object], rounds: int = 7) -> tuple:
    """Median wall times of two actions run alternately (a shared machine's load hits both alike)."""
    ours(), raw()
    times: tuple = ([], [])
    for _round in range(rounds):
        for side, action in enumerate((ours, raw)):
            started = time.perf_counter()
            action()
            times[side].append(time.perf_counter() - started)
    return CP.median(times[0]), CP.median(times[1])


# ---------------------------------------------------------------------------- checkpoints
def _first_scheme_format(store: Path, legacy) -> None:
    store.mkdir(mode=0o700)
    block = legacy.LegacyCipher.create(KEY).describe()
    (store / "format").write_text(__import__("json").dumps({"format_version": 3, "encryption": block}))


def checkpoints(work: Path, tree: Path, legacy) -> List[dict]:
    """Cold checkpoints: plain, AES-256-GCM and first-scheme stores, sides alternating."""
    sides = {"plain": {}, "aead": {"encryption_key": KEY}, "first": {"encryption_key": KEY}}
    modules = {name: CP.Modules(work, work / ("store-" + name)) for name in sides}
    if BEFORE:
        sides.update({"before plain": {}, "before aead": {"encryption_key": KEY}})
        modules.update({name: CP.Modules(work, work / ("store-" + name.replace(" ", "-")), Path(BEFORE))
                        for name in ("before plain", "before aead")})
    seconds = {name: [] for name in sides}
    cpu = {name: [] for name in sides}  # user + system of the module and its workers: steadier under load
    peak = {}

    def once(name: str) -> float:
        shutil.rmtree(modules[name].store, ignore_errors=True)
        if name == "first":
            _first_scheme_format(modules[name].store, legacy)
        outcome = []
        elapsed = CP.timed(lambda: outcome.append(modules[name].run(
            "checkpoint", paths=[str(tree)], label="cold", force=True, **sides[name])[0]))
        peak[name] = max(peak.get(name, 0.0), outcome[0].max_rss_mb)
        cpu[name].append(outcome[0].cpu_s)
        return elapsed

    for name in sides:  # warm-up, untimed
        once(name)
        cpu[name].clear()
    for _round in range(ROUNDS):
        for name in sides:
            seconds[name].append(once(name))
    for name in sides:
        shutil.rmtree(modules[name].store, ignore_errors=True)
    plain = CP.median(seconds["plain"])
    before = [{"name": "encrypted cold checkpoint (AES-256-GCM) vs plain, before",
               "ours_s": CP.median(seconds["before aead"]), "baseline": "plain",
               "baseline_s": CP.median(seconds["before plain"]), "target": None},
              {"name": "encrypted cold checkpoint (AES-256-GCM) CPU vs plain, before",
               "ours_s": CP.median(cpu["before aead"]), "baseline": "plain",
               "baseline_s": CP.median(cpu["before plain"]), "target": None}] if BEFORE else []
    figures = [
        {"name": "encrypted cold checkpoint (AES-256-GCM) vs plain", "ours_s": CP.median(seconds["aead"]),
         "baseline": "plain", "baseline_s": plain, "target": 1.3},
        {"name": "encrypted cold checkpoint (AES-256-GCM) CPU vs plain", "ours_s": CP.median(cpu["aead"]),
         "baseline": "plain", "baseline_s": CP.median(cpu["plain"]), "target": None},
        {"name": "encrypted cold checkpoint (first scheme) vs plain", "ours_s": CP.median(seconds["first"]),
         "baseline": "plain", "baseline_s": plain, "target": None},
        {"name": "encrypted cold checkpoint peak memory", "value": peak["aead"], "unit": "MB", "target": 60},
    ]
    return figures[:1] + before + figures[1:]


# ---------------------------------------------------------------------------- throughput
def throughput(workdir: Path, crypto, legacy, size: int, file_sizes: List[int]) -> List[dict]:
    """Envelopes of the store vs raw AES-GCM on the same bytes."""
    aesgcm = crypto.cryptography_library().AESGCM
    cipher = crypto.Cipher.create(KEY)
    data = os.urandom(size)
    view = memoryview(data)
    chunk = crypto.CHUNK
    pieces = [view[start:start + chunk] for start in range(0, size, chunk)]
    raw = aesgcm(os.urandom(32))
    nonce = os.urandom(12)

    def raw_encrypt() -> None:
        for piece in pieces:
            raw.encrypt(nonce, piece, b"header-of-40-bytes-like-the-envelope-has")

    def ours_encrypt() -> None:
        sealer = cipher.sealer()
        for piece in pieces:
            sealer.update(piece)
        sealer.finish(b"object:" + b"0" * 64)

    # Decryption reads both sides from a file in the page cache, as a restore does: the raw side
    # is the best loop by hand (one buffer, readinto, decrypt), on ciphertext of the same size.
    raw_file, envelope_file = workdir / "raw.sealed", workdir / "envelope.sealed"
    with open(raw_file, "wb") as out:
        for piece in pieces:
            out.write(raw.encrypt(nonce, piece, b"header-of-40-bytes-like-the-envelope-has"))
    envelope_file.write_bytes(cipher.seal(data, b"object:" + b"0" * 64))
    segment = chunk + 16

    def raw_decrypt() -> None:
        buffer = bytearray(segment)
        view = memoryview(buffer)
        with open(raw_file, "rb", buffering=0) as handle:
            while True:
                count = handle.readinto(buffer)
                if not count:
                    break
                raw.decrypt(nonce, view[:count], b"header-of-40-bytes-like-the-envelope-has")

    def ours_decrypt() -> None:
        with open(envelope_file, "rb", buffering=0) as handle:
            for _chunk in cipher.open_stream(handle, os.fstat(handle.fileno()).st_size, b"object:" + b"0" * 64,
                                             "bench"):
                pass

    files = [os.urandom(length) for length in file_sizes]

    def raw_small() -> None:
        for blob in files:
            raw.encrypt(nonce, blob, b"header-of-40-bytes-like-the-envelope-has")

    def ours_small() -> None:
        for blob in files:
            cipher.seal(blob, b"object:" + b"0" * 64)

    keys = legacy.derive_keys(KEY, {"name": "pbkdf2-sha256", "iterations": 10, "salt": "00" * 16})

    def first_scheme_encrypt() -> None:
        sealer = legacy.Sealer(keys)
        for piece in pieces:
            sealer.update(piece)
        sealer.tag(b"object:" + b"0" * 64)

    mib = size / (1 << 20)
    figures_files = (raw_file, envelope_file)
    ours_enc, raw_enc = _pair(ours_encrypt, raw_encrypt)
    ours_dec, raw_dec = _pair(ours_decrypt, raw_decrypt)
    ours_sm, raw_sm = _pair(ours_small, raw_small, ROUNDS)
    figures = [
        {"name": "encrypt %d MiB: envelope vs raw AES-GCM" % mib, "ours_s": ours_enc,
         "baseline": "raw AESGCM", "baseline_s": raw_enc, "target": 1.5},
        {"name": "decrypt %d MiB file: open_stream vs raw AES-GCM" % mib, "ours_s": ours_dec,
         "baseline": "raw AESGCM", "baseline_s": raw_dec, "target": 1.5},
        {"name": "encrypt %d small files: envelopes vs raw" % len(files), "ours_s": ours_sm,
         "baseline": "raw AESGCM", "baseline_s": raw_sm, "target": None},
        {"name": "encrypt %d MiB: first scheme vs raw AES-GCM" % mib, "ours_s": _best(first_scheme_encrypt, 1),
         "baseline": "raw AESGCM", "baseline_s": raw_enc, "target": None},
        {"name": "key derivation (scrypt N=2^14 r=8 p=2)", "value": _best(lambda: crypto.Cipher.create(KEY)),
         "unit": "s", "target": None},
    ]
    for path in figures_files:
        path.unlink()
    return figures


def run(workdir: Path, quick: bool) -> List[dict]:
    """Build bench_checkpoint's tree and measure every figure."""
    crypto, legacy = _crypto()
    if crypto.cryptography_library() is None:
        raise RuntimeError("The crypto benchmark needs pyca/cryptography: pip install cryptography")
    shape = CP.TreeShape(files=1000, total_bytes=20 << 20, symlinks=10, empty_dirs=5) if quick else \
        CP.TreeShape(files=10000, total_bytes=200 << 20, symlinks=100, empty_dirs=40)
    tree = workdir / "tree"
    tree.mkdir()
    files = CP.make_tree(tree, shape)
    sizes = [path.stat().st_size for path in files]
    figures = checkpoints(workdir, tree, legacy)
    shutil.rmtree(tree)
    small = [size for size in sizes if size <= 256 * 1024]
    figures += throughput(workdir, crypto, legacy, shape.total_bytes, random.Random(3).sample(small, min(len(small), 10000)))
    return figures
