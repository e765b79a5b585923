# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The first encryption scheme of stores (stdlib only), kept to read and rekey existing stores.

New stores use the AES-256-GCM scheme of _crypto.py; ``checkpoint state=rekeyed`` moves a store
of this scheme to it. This one is encrypt-then-MAC from two standard-library primitives
(see docs/security.md, "The first scheme"):

- key stretching: PBKDF2-HMAC-SHA256 of the user's key with a per-store random salt, then
  HKDF (RFC 5869, HMAC-SHA256) to derive independent keys for encryption, authentication and
  the key fingerprint;
- encryption: XOR with a SHAKE-256 keystream, ``SHAKE256(k_enc || nonce || block index)``,
  in blocks of BLOCK bytes (a keyed sponge is a PRF; SHAKE output is prefix-consistent);
- authentication: HMAC-SHA256 over header, ciphertext and the SHA-256 of a context string
  (the object name or ``manifest:<id>``), so objects cannot be swapped or renamed;
- object names: HMAC-SHA256 of the plaintext under a random per-store naming key that is
  stored wrapped (sealed) under the user's key, so equal content deduplicates without the
  store revealing plain SHA-256 hashes of its content.

Envelope: ``MAGIC (8) | key id (16) | nonce (16) | ciphertext | tag (32)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional

from ..common.errors import IntegrityError
from ..common.errors import EncryptionKeyError
from .crypto import LEGACY_SCHEME as SCHEME, header_nonce
MAGIC = b"GRENC\x00\x01\x00"
KEY_ID_BYTES = 16
NONCE_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
TAG_BYTES = 32
BLOCK = 1024 * 1024
READ_CHUNK = 1024 * 1024
PBKDF2_ITERATIONS = 200_000
_INFO = b"gitops.rollback store v1 "


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 HKDF-Extract with HMAC-SHA256."""
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-Expand with HMAC-SHA256."""
    if length > 255 * 32:
        raise ValueError("HKDF-Expand cannot produce more than 8160 bytes")
    block, out, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def new_kdf() -> dict:
    """Return the key-derivation parameters of a new store (random salt)."""
    return {"name": "pbkdf2-sha256", "iterations": PBKDF2_ITERATIONS, "salt": os.urandom(16).hex()}


@dataclass(frozen=True)
class Keys:
    """The keys derived from one user key for one store."""

    key_id: bytes
    enc: bytes
    mac: bytes

    @property
    def key_id_hex(self) -> str:
        """The fingerprint of the key, safe to record and show."""
        return self.key_id.hex()


def derive_keys(secret: str, kdf: dict) -> Keys:
    """Derive the fingerprint, encryption and MAC keys of ``secret`` with a store's KDF parameters."""
    if not isinstance(kdf, dict) or kdf.get("name") != "pbkdf2-sha256":
        raise EncryptionKeyError("Unknown key derivation %r in the store format; upgrade gitops.rollback." % (kdf,))
    try:
        salt = bytes.fromhex(kdf["salt"])
        iterations = int(kdf["iterations"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError("The store's key derivation parameters are damaged: %r." % (kdf,)) from exc
    stretched = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)
    prk = hkdf_extract(salt, stretched)
    return Keys(
        key_id=hkdf_expand(prk, _INFO + b"key-id", KEY_ID_BYTES),
        enc=hkdf_expand(prk, _INFO + b"encryption"),
        mac=hkdf_expand(prk, _INFO + b"authentication"),
    )


def _xor(data: bytes, stream: bytes) -> bytes:
    size = len(data)
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:size], "little")).to_bytes(size, "little")


class _Keystream:
    """SHAKE-256 keystream in blocks; a block's prefix is computed as far as it is used."""

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self.prefix = key + nonce
        self.index = 0
        self.buffer = b""
        self.pos = 0

    def take(self, size: int) -> bytes:
        """Return the next ``size`` keystream bytes."""
        parts = []
        while size:
            if self.pos == BLOCK:
                self.index, self.pos, self.buffer = self.index + 1, 0, b""
            want = min(size, BLOCK - self.pos)
            if self.pos + want > len(self.buffer):
                length = min(BLOCK, max(self.pos + want, 2 * len(self.buffer)))
                self.buffer = hashlib.shake_256(self.prefix + struct.pack(">Q", self.index)).digest(length)
            parts.append(self.buffer[self.pos:self.pos + want])
            self.pos += want
            size -= want
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _context_digest(context: bytes) -> bytes:
    return hashlib.sha256(context).digest()


class Sealer:
    """Encrypts a stream: ``header``, then :meth:`update` per chunk, then :meth:`tag`."""

    def __init__(self, keys: Keys, nonce: Optional[bytes] = None) -> None:
        nonce = nonce or os.urandom(NONCE_BYTES)
        self.header = MAGIC + keys.key_id + nonce
        self._mac = hmac.new(keys.mac, self.header, hashlib.sha256)
        self._stream = _Keystream(keys.enc, nonce)

    def update(self, plain: bytes) -> bytes:
        """Return the ciphertext of the next plaintext chunk."""
        if not plain:
            return b""
        cipher = _xor(bytes(plain), self._stream.take(len(plain)))
        self._mac.update(cipher)
        return cipher

    def tag(self, context: bytes) -> bytes:
        """Return the tag binding header, ciphertext and ``context``."""
        self._mac.update(_context_digest(context))
        return self._mac.digest()

    finish = tag  # the name every sealer has


def seal(keys: Keys, plain: bytes, context: bytes) -> bytes:
    """Return the envelope of ``plain``."""
    sealer = Sealer(keys)
    return sealer.header + sealer.update(plain) + sealer.tag(context)


def _check_header(keys: Keys, header: bytes, what: str) -> bytes:
    """Return the nonce of a well-formed header of this key; raise otherwise."""
    return header_nonce(header, MAGIC, keys.key_id, what)


def _tamper_error(what: str) -> IntegrityError:
    return IntegrityError(
        "%s fails authentication (MAC mismatch): it was modified, truncated or swapped. Nothing was "
        "restored from it; run gitops.rollback.checkpoint state=verified and restore from another "
        "checkpoint." % what)


def open_bytes(keys: Keys, envelope: bytes, context: bytes, what: str) -> bytes:
    """Verify and decrypt a whole envelope held in memory."""
    nonce = _check_header(keys, envelope[:HEADER_BYTES], what)
    if len(envelope) < HEADER_BYTES + TAG_BYTES:
        raise _tamper_error(what)
    body, tag = envelope[HEADER_BYTES:-TAG_BYTES], envelope[-TAG_BYTES:]
    mac = hmac.new(keys.mac, envelope[:HEADER_BYTES], hashlib.sha256)
    mac.update(body)
    mac.update(_context_digest(context))
    if not hmac.compare_digest(mac.digest(), tag):
        raise _tamper_error(what)
    return _xor(body, _Keystream(keys.enc, nonce).take(len(body)))


def open_stream(keys: Keys, handle: BinaryIO, size: int, context: bytes, what: str) -> Iterator[bytes]:
    """Yield the plaintext of an envelope file, in chunks, only after its tag was verified.

    Two passes over the same open file: the first checks the tag, the second decrypts.
    """
    header = handle.read(HEADER_BYTES)
    nonce = _check_header(keys, header, what)
    body_size = size - HEADER_BYTES - TAG_BYTES
    if body_size < 0:
        raise _tamper_error(what)
    mac = hmac.new(keys.mac, header, hashlib.sha256)
    for chunk in _read_exactly(handle, body_size):
        mac.update(chunk)
    mac.update(_context_digest(context))
    if not hmac.compare_digest(mac.digest(), handle.read(TAG_BYTES)):
        raise _tamper_error(what)
    handle.seek(HEADER_BYTES)
    stream = _Keystream(keys.enc, nonce)
    for chunk in _read_exactly(handle, body_size):
        yield _xor(chunk, stream.take(len(chunk)))


def _read_exactly(handle: BinaryIO, size: int) -> Iterator[bytes]:
    left = size
    while left:
        chunk = handle.read(min(READ_CHUNK, left))
        if not chunk:
            raise IntegrityError("An encrypted object was truncated while it was read.")
        left -= len(chunk)
        yield chunk


def envelope_key_id(handle: BinaryIO) -> Optional[str]:
    """Return the key id (hex) of an envelope file, or None when it is not an envelope."""
    header = handle.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or header[:len(MAGIC)] != MAGIC:
        return None
    return header[len(MAGIC):len(MAGIC) + KEY_ID_BYTES].hex()


class LegacyCipher:
    """The encryption of one store of this scheme: keys from the user's key, a wrapped naming key."""

    scheme = SCHEME

    def __init__(self, keys: Keys, name_key: bytes, kdf: dict) -> None:
        self.keys = keys
        self.name_key = name_key
        self.kdf = kdf

    @property
    def key_id(self) -> str:
        """Fingerprint of the user's key."""
        return self.keys.key_id_hex

    def hasher(self):
        """Return a fresh hash object computing object names (HMAC-SHA256 under the naming key)."""
        return hmac.new(self.name_key, digestmod=hashlib.sha256)

    def name(self, data) -> str:
        """Return the object name of ``data`` (what :meth:`hasher` computes, in one go)."""
        return hmac.digest(self.name_key, data, "sha256").hex()

    @classmethod
    def create(cls, secret: str, kdf: Optional[dict] = None) -> "LegacyCipher":
        """Return the cipher of a new store of this scheme (only tests make them now)."""
        kdf = kdf or new_kdf()
        return cls(derive_keys(secret, kdf), os.urandom(32), kdf)

    @classmethod
    def load(cls, secret: str, encryption: dict, store: str) -> "LegacyCipher":
        """Return the cipher described by a store format's ``encryption`` block, checking the key."""
        keys = derive_keys(secret, encryption.get("kdf"))
        if keys.key_id_hex != encryption.get("key_id"):
            raise EncryptionKeyError(
                "The encryption_key given is not the key of store %s (store key id %s, given key id %s). Nothing "
                "was read or changed. Pass the right key (from Ansible Vault)."
                % (store, encryption.get("key_id"), keys.key_id_hex),
                expected=encryption.get("key_id"), actual=keys.key_id_hex)
        try:
            wrapped = base64.b64decode(encryption["name_key"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError("The naming key in %s/format is damaged." % store) from exc
        name_key = open_bytes(keys, wrapped, b"name-key", "The naming key in %s/format" % store)
        return cls(keys, name_key, encryption["kdf"])

    def with_key(self, secret: str, kdf: dict) -> "LegacyCipher":
        """Return this store's cipher under another user key (same naming key): an old rekey's target."""
        return LegacyCipher(derive_keys(secret, kdf), self.name_key, kdf)

    def describe(self) -> dict:
        """Return the ``encryption`` block of the format file (the naming key sealed, no secret in clear)."""
        wrapped = base64.b64encode(seal(self.keys, self.name_key, b"name-key")).decode("ascii")
        return {"scheme": SCHEME, "key_id": self.key_id, "kdf": self.kdf, "name_key": wrapped}

    def sealer(self) -> Sealer:
        """Return a streaming sealer of one envelope."""
        return Sealer(self.keys)

    def seal(self, plain: bytes, context: bytes) -> bytes:
        """Return the envelope of ``plain`` bound to ``context``."""
        return seal(self.keys, plain, context)

    def seal_transient(self, plain: bytes, context: bytes) -> bytes:
        """Return the envelope of a packed object: :meth:`seal` (the current scheme's writes into a reused buffer)."""
        return self.seal(plain, context)

    def unseal(self, envelope: bytes, context: bytes, what: str) -> bytes:
        """Verify and decrypt an envelope bound to ``context``."""
        return open_bytes(self.keys, envelope, context, what)

    def open_stream(self, handle: BinaryIO, size: int, context: bytes, what: str) -> Iterator[bytes]:
        """Yield the plaintext of an envelope file once its tag is verified."""
        return open_stream(self.keys, handle, size, context, what)

    @staticmethod
    def envelope_key_id(handle: BinaryIO) -> Optional[str]:
        """Return the key id of an envelope file of this scheme, or None."""
        return envelope_key_id(handle)
