# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Authenticated encryption of store objects and manifests: AES-256-GCM in chunks, scrypt keys.

Scheme ``aes-256-gcm-stream/v2`` (docs/store-format.md, "Encryption"), built only from vetted
primitives of pyca/cryptography (a managed-host requirement of encrypted stores only):

- user key -> scrypt (N=2**14, r=8, p=2: 16 MiB; random 16-byte salt per store; parameters
  recorded in the store's ``format``) -> 32 bytes; HKDF-Expand-SHA256 (RFC 5869) of those gives the key id
  (16 bytes, kept in clear: checking a guessed key against it costs a scrypt) and the content key;
- each envelope has a random 128-bit nonce; its own AES-256-GCM key is
  HKDF-Expand(content key, label || nonce), so no key is shared by two envelopes unless 128-bit
  random values collide;
- the plaintext is cut into chunks of CHUNK bytes (age's STREAM): chunk ``i`` is sealed with the
  96-bit nonce ``i`` (11 bytes, big-endian) || final flag (1 byte), and associated data = the
  envelope header, plus the context (kind and name of the object) for the final chunk. Nonces
  are a counter under a key of their own: they cannot repeat. A reader verifies the final chunk
  (and so the context and the length) before it releases the first byte, then each chunk as it
  goes: memory stays bounded by one chunk whatever the object's size;
- object names: HMAC-SHA256 of the plaintext under a random per-store naming key, stored sealed
  under the content key, so equal content deduplicates without plain hashes in the store.

Envelope: ``MAGIC (8) | key id (16) | nonce (16) | chunk 0 | ... | final chunk``, each chunk its
ciphertext plus a 16-byte tag; every chunk but the final one holds exactly CHUNK bytes.
Stores of the first scheme (crypto_legacy.py, imported only for them) stay readable and writable; ``checkpoint
state=rekeyed`` moves them to this one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import socket
import sys
import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING, BinaryIO, Dict, Iterator, Optional, Tuple, Union

from ..common.errors import EncryptionKeyError, IntegrityError, MissingLibraryError

if TYPE_CHECKING:  # the first scheme's module is imported only for a store of that scheme
    from .crypto_legacy import LegacyCipher


SCHEME = "aes-256-gcm-stream/v2"
LEGACY_SCHEME = "shake256-xor+hmac-sha256+hkdf/v1"  # the first scheme (crypto_legacy.SCHEME)
MAGIC = b"GRAEAD\x02\x00"
KEY_ID_BYTES = 16
NONCE_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
TAG_BYTES = 16
CHUNK = 1024 * 1024
SEGMENT = CHUNK + TAG_BYTES
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 2}  # the work of N=2**15, p=1 in 16 MiB (module memory stays < 60 MB)
SCRYPT_MAX_BYTES = 1024 ** 3  # refuse parameters (from a damaged or forged format) that need more memory
MIN_KEY_CHARS = 16
SCRATCH_BYTES = 256 * 1024 + HEADER_BYTES + TAG_BYTES  # a packed object's envelope fits (store.packs.SMALL_OBJECT)
_LABEL = b"gitops.rollback aead v2 "


def _legacy():
    """Return the first scheme's module, imported on first use (a store of the current scheme never needs it)."""
    from . import crypto_legacy  # pylint: disable=import-outside-toplevel

    return crypto_legacy


def header_nonce(header: bytes, magic: bytes, key_id: bytes, what: str) -> bytes:
    """Return the nonce of an envelope header ``magic | key id (16) | nonce (16)`` of ``key_id``; raise otherwise.

    Both schemes lay their headers out so; only the magic differs.
    """
    size = len(magic) + KEY_ID_BYTES + NONCE_BYTES
    if len(header) < size or header[:len(magic)] != magic:
        raise IntegrityError("%s is not an encrypted object of this store (bad header); it is damaged or was "
                             "written by something else. Restore from another checkpoint." % what)
    found = header[len(magic):len(magic) + KEY_ID_BYTES]
    if found != key_id:
        raise EncryptionKeyError(
            "%s was encrypted with key id %s, not with the given key (id %s). Pass the store's key, or finish an "
            "interrupted rekey." % (what, found.hex(), key_id.hex()), object_key_id=found.hex())
    return header[len(magic) + KEY_ID_BYTES:size]


def check_secret(secret: object) -> str:
    """Refuse a key that is not a string of at least MIN_KEY_CHARS characters."""
    if not isinstance(secret, str) or len(secret) < MIN_KEY_CHARS:
        raise EncryptionKeyError(
            "encryption_key must be at least %d characters (use a random key, e.g. `openssl rand -base64 32`, "
            "kept in Ansible Vault). Nothing was changed." % MIN_KEY_CHARS)
    return secret


@functools.lru_cache(maxsize=None)
def cryptography_library() -> Optional[SimpleNamespace]:
    """Return pyca/cryptography's ``AESGCM``, ``Scrypt`` and ``InvalidTag``, imported on first use;
    None when it is not installed. Only encrypted stores need it: a module run on a plain store
    never loads it, and starts sooner."""
    # pylint: disable=import-outside-toplevel
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    except ImportError:
        return None
    return SimpleNamespace(AESGCM=AESGCM, Scrypt=Scrypt, InvalidTag=InvalidTag)


def require_cryptography(purpose: str) -> None:
    """Fail with the message Ansible's ``missing_required_lib`` gives when pyca/cryptography is absent."""
    if cryptography_library() is None:
        raise MissingLibraryError(
            "Failed to import the required Python library (cryptography) on %s's Python %s. It is needed %s. "
            "Install it on that host (`pip install cryptography`, or the distribution's python3-cryptography "
            "package), or set ansible_python_interpreter to a Python that has it. Nothing was read or changed."
            % (socket.gethostname(), sys.executable, purpose))


def hkdf_expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-Expand with HMAC-SHA256 (``prk`` is already a uniformly random key)."""
    if length > 255 * 32:
        raise ValueError("HKDF-Expand cannot produce more than 8160 bytes")
    block, out, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]


def new_kdf(secret: Optional[str] = None) -> dict:
    """Return the key-derivation parameters of a new store (random salt): those ``derive_soon`` prepared
    for ``secret``, whose derivation is already under way, else new ones."""
    prepared = _PREPARED.pop(secret, None) if secret is not None else None
    return prepared or {"name": "scrypt", "salt": os.urandom(16).hex(), "length": 32, **SCRYPT}


def _scrypt_arguments(secret: bytes, kdf: dict) -> Tuple[bytes, bytes, int, int, int, int]:
    """Return the arguments of scrypt of ``secret`` under recorded parameters, checked (IntegrityError)."""
    try:
        salt = bytes.fromhex(kdf["salt"])
        n, r, p, length = (int(kdf[name]) for name in ("n", "r", "p", "length"))
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError("The store's key derivation parameters are damaged: %r." % (kdf,)) from exc
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or not 16 <= length <= 64 \
            or 128 * r * n > SCRYPT_MAX_BYTES:
        raise IntegrityError("The store's scrypt parameters %r are out of range (N a power of two, 128*r*N at most "
                             "1 GiB, p at most 16, a key of 16 to 64 bytes): the format file is damaged or forged."
                             % (kdf,))
    return secret, salt, n, r, p, length


def scrypt(secret: bytes, kdf: dict) -> bytes:
    """Return scrypt (RFC 7914) of ``secret`` with a store's recorded parameters, checked first.

    Derived once per process for the same secret and parameters: a module run that creates a
    store and then opens it (or opens it twice) pays the deliberately slow derivation once; one
    that ``derive_soon`` started takes its result."""
    require_cryptography("to open an encrypted store (scrypt, AES-256-GCM)")
    return _scrypt_once(*_scrypt_arguments(secret, kdf))


@functools.lru_cache(maxsize=4)
def _scrypt_once(*arguments) -> bytes:
    running = _RUNNING.pop(arguments, None)
    derived = running.result() if running is not None else None
    return derived or _derive(*arguments)


def _derive(secret: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return cryptography_library().Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(secret)


class _Derivation:
    """scrypt in a thread of its own: OpenSSL's scrypt releases the interpreter lock, so the derivation
    runs on another core while the module goes on (imports its code, opens the store)."""

    def __init__(self, arguments: Tuple[bytes, bytes, int, int, int, int]) -> None:
        self._derived: Optional[bytes] = None
        self._thread = threading.Thread(target=self._run, args=arguments, name="scrypt", daemon=True)
        self._thread.start()

    def _run(self, *arguments) -> None:
        try:
            self._derived = _derive(*arguments)
        except Exception:  # pylint: disable=broad-except
            pass  # the derivation is made again where it is needed, and fails there with its message

    def result(self) -> Optional[bytes]:
        """Return the derived key once the thread is done; None when it failed (or did not survive a fork)."""
        self._thread.join()
        return self._derived


_RUNNING: Dict[Tuple[bytes, bytes, int, int, int, int], _Derivation] = {}  # derivations started by derive_soon
_PREPARED: Dict[str, dict] = {}  # secret -> the KDF parameters of a store it is about to create


def _finish_derivations() -> None:
    """Before a fork: let every derivation under way finish, so that no child starts with OpenSSL in the middle
    of one (its locks held by a thread the child does not have); the child inherits the results."""
    for running in list(_RUNNING.values()):
        running.result()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_derivations)


def derive_soon(secret: object, encryption: Optional[dict]) -> None:
    """Start the derivation of ``secret``'s key in the background, as soon as the key and the store's
    format (its ``encryption`` block; None: a store about to be created) are known.

    Nothing else changes: opening the store checks the key as always and takes the result (a module
    run waits for scrypt only where it needs the key). Does nothing for a key or parameters that
    opening would refuse, a store of the first scheme, or a host without pyca/cryptography.
    """
    if not isinstance(secret, str) or len(secret) < MIN_KEY_CHARS or cryptography_library() is None:
        return
    if encryption is None:
        kdf = _PREPARED.setdefault(secret, new_kdf())
    elif encryption.get("scheme") == SCHEME and isinstance(encryption.get("kdf"), dict) \
            and encryption["kdf"].get("name") == "scrypt":
        kdf = encryption["kdf"]
    else:
        return
    try:
        arguments = _scrypt_arguments(secret.encode("utf-8"), kdf)
    except IntegrityError:
        return
    if arguments not in _RUNNING:
        _RUNNING[arguments] = _Derivation(arguments)


def derive_keys(secret: str, kdf: dict) -> Tuple[bytes, bytes]:
    """Return (key id, content key) of ``secret`` under a store's KDF parameters."""
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise EncryptionKeyError("Unknown key derivation %r in the store format; upgrade gitops.rollback." % (kdf,))
    stretched = scrypt(check_secret(secret).encode("utf-8"), kdf)
    return hkdf_expand(stretched, _LABEL + b"key-id", KEY_ID_BYTES), hkdf_expand(stretched, _LABEL + b"content")


class _EnvelopeKeys:
    """Makes the AES-256-GCM of each envelope: HKDF-Expand(content key, label || nonce), one HMAC block.

    The HMAC of the content key, fed with the fixed label, is made once per cipher and copied for
    each envelope (the key's padding is not hashed again at every object)."""

    def __init__(self, content_key: bytes) -> None:
        self._mac = hmac.new(content_key, _LABEL + b"envelope ", hashlib.sha256)
        self._aesgcm = cryptography_library().AESGCM

    def aead(self, nonce: bytes):
        """Return the AEAD of the envelope with ``nonce``."""
        mac = self._mac.copy()
        mac.update(nonce + b"\x01")
        return self._aesgcm(mac.digest())


def _chunk_nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


_FIRST_FINAL = _chunk_nonce(0, True)


class Sealer:
    """Encrypts one envelope as a stream: ``header``, then :meth:`update` per piece, then :meth:`finish`.

    Full chunks are sealed as soon as they are complete (read straight from the caller's buffer);
    only the unfinished last part of a piece is copied.
    """

    def __init__(self, keys: _EnvelopeKeys, key_id: bytes, nonce: Optional[bytes] = None) -> None:
        nonce = nonce or os.urandom(NONCE_BYTES)
        self.header = MAGIC + key_id + nonce
        self._aead = keys.aead(nonce)
        self._index = 0
        self._pending = bytearray()

    def _seal(self, data, final: bool, context: bytes = b"") -> bytes:
        nonce = _chunk_nonce(self._index, final)
        self._index += 1
        return self._aead.encrypt(nonce, data, self.header + context if final else self.header)

    def update(self, plain) -> bytes:
        """Return the ciphertext of the chunks that ``plain`` completes (maybe empty)."""
        view = memoryview(plain).cast("B")
        out = []
        if self._pending:
            take = CHUNK - len(self._pending)
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < CHUNK:
                return b""
            out.append(self._seal(self._pending, False))
            self._pending = bytearray()
        while len(view) >= CHUNK:
            out.append(self._seal(view[:CHUNK], False))
            view = view[CHUNK:]
        if view:
            self._pending += view
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self, context: bytes) -> bytes:
        """Return the final chunk (the rest of the plaintext, maybe empty), bound to ``context``."""
        final = self._seal(self._pending, True, context)
        self._pending = bytearray()
        return final


def _tamper_error(what: str) -> IntegrityError:
    return IntegrityError(
        "%s fails authentication (AES-GCM tag mismatch): it was modified, truncated or swapped. Nothing was "
        "restored from it; run gitops.rollback.checkpoint state=verified and restore from another "
        "checkpoint." % what)


def _layout(size: int) -> Optional[Tuple[int, int]]:
    """Return (number of full chunks, bytes of the final chunk) of an envelope of ``size`` bytes."""
    full, last = divmod(size - HEADER_BYTES, SEGMENT)
    return (full, last) if size >= HEADER_BYTES and last >= TAG_BYTES else None


class Cipher:
    """The encryption of one store of the current scheme: keys from the user's key, a wrapped naming key."""

    scheme = SCHEME

    def __init__(self, key_id: bytes, content_key: bytes, name_key: bytes, kdf: dict) -> None:
        self._key_id = key_id
        self._content = content_key
        self._envelopes = _EnvelopeKeys(content_key)
        self._name_mac = None
        self.name_key = name_key
        self.kdf = kdf

    @property
    def name_key(self) -> bytes:
        """The store's naming key (object names are HMAC-SHA256 of the content under it)."""
        return self._name_key

    @name_key.setter
    def name_key(self, key: bytes) -> None:
        self._name_key = key
        self._name_mac = hmac.new(key, digestmod=hashlib.sha256)  # copied for each name (see hasher)

    # ---------------------------------------------------------------- keys
    @property
    def key_id(self) -> str:
        """Fingerprint of the user's key under this store's KDF (hex), safe to record and show."""
        return self._key_id.hex()

    @classmethod
    def create(cls, secret: str, name_key: Optional[bytes] = None) -> "Cipher":
        """Return the cipher of a new store (new salt; a random naming key unless one is kept)."""
        kdf = new_kdf(secret)
        key_id, content = derive_keys(secret, kdf)
        return cls(key_id, content, name_key or os.urandom(32), kdf)

    @classmethod
    def load(cls, secret: str, encryption: dict, store: str) -> Union["Cipher", "LegacyCipher"]:
        """Return the cipher described by a store format's ``encryption`` block, checking the key."""
        scheme = encryption.get("scheme")
        if scheme == LEGACY_SCHEME:
            return _legacy().LegacyCipher.load(check_secret(secret), encryption, store)
        if scheme != SCHEME:
            raise EncryptionKeyError("Store %s uses encryption scheme %r; this collection knows %r and %r. Upgrade "
                                     "gitops.rollback." % (store, scheme, SCHEME, LEGACY_SCHEME))
        key_id, content = derive_keys(secret, encryption.get("kdf"))
        if key_id.hex() != encryption.get("key_id"):
            raise EncryptionKeyError(
                "The encryption_key given is not the key of store %s (store key id %s, given key id %s). Nothing "
                "was read or changed. Pass the right key (from Ansible Vault)."
                % (store, encryption.get("key_id"), key_id.hex()),
                expected=encryption.get("key_id"), actual=key_id.hex())
        try:
            wrapped = base64.b64decode(encryption["name_key"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError("The naming key in %s/format is damaged." % store) from exc
        cipher = cls(key_id, content, b"", encryption["kdf"])
        cipher.name_key = cipher.unseal(wrapped, b"name-key", "The naming key in %s/format" % store)
        return cipher

    @staticmethod
    def is_key_of(secret: str, encryption: dict) -> bool:
        """Tell whether ``secret`` is the key of a store of the current scheme (False for any other scheme)."""
        if encryption.get("scheme") != SCHEME:
            return False
        return derive_keys(secret, encryption.get("kdf"))[0].hex() == encryption.get("key_id")

    @classmethod
    def rekey_target(cls, old, secret: str, marker: Optional[dict]) -> Union["Cipher", "LegacyCipher"]:
        """Return the cipher a rekey of the store of ``old`` moves to: a new one, or the one ``marker`` names.

        The naming key is kept, so object names do not change. A marker without a scheme was
        written by a release that rekeyed within the first scheme; that rekey is finished as begun.
        """
        if not marker:
            return cls.create(secret, old.name_key)
        scheme = marker.get("scheme", LEGACY_SCHEME)
        if scheme == LEGACY_SCHEME and isinstance(old, _legacy().LegacyCipher):
            return old.with_key(check_secret(secret), marker["kdf"])
        if scheme != SCHEME:
            raise IntegrityError("The rekey recorded in the store's format names scheme %r over a store of scheme %r: "
                                 "the format file is damaged." % (scheme, old.scheme))
        key_id, content = derive_keys(secret, marker.get("kdf"))
        return cls(key_id, content, old.name_key, marker["kdf"])

    def marker(self) -> dict:
        """Return what the format file records of a rekey in progress towards this cipher."""
        return {"scheme": self.scheme, "key_id": self.key_id, "kdf": self.kdf}

    def hasher(self):
        """Return a fresh hash object computing object names (HMAC-SHA256 under the naming key)."""
        return self._name_mac.copy()

    def name(self, data) -> str:
        """Return the object name of ``data`` (what :meth:`hasher` computes, in one go)."""
        mac = self._name_mac.copy()
        mac.update(data)
        return mac.hexdigest()

    def describe(self) -> dict:
        """Return the ``encryption`` block of the format file (the naming key sealed, no secret in clear)."""
        wrapped = base64.b64encode(self.seal(self.name_key, b"name-key")).decode("ascii")
        return {"scheme": SCHEME, "aead": "AES-256-GCM", "chunk_size": CHUNK, "key_id": self.key_id,
                "kdf": self.kdf, "name_key": wrapped}

    # ------------------------------------------------------------ envelopes
    def sealer(self, nonce: Optional[bytes] = None) -> Sealer:
        """Return a streaming sealer of one new envelope."""
        return Sealer(self._envelopes, self._key_id, nonce)

    def seal(self, plain, context: bytes) -> bytes:
        """Return the envelope of ``plain`` bound to ``context`` (one final chunk when it is small)."""
        if len(plain) < CHUNK:  # the common case (packed objects, manifests): no stream state
            nonce = os.urandom(NONCE_BYTES)
            header = MAGIC + self._key_id + nonce
            return header + self._envelopes.aead(nonce).encrypt(_FIRST_FINAL, plain, header + context)
        sealer = self.sealer()
        body = sealer.update(plain)
        return b"".join((sealer.header, body, sealer.finish(context)))

    def seal_transient(self, plain, context: bytes):
        """Return the envelope of ``plain`` (less than CHUNK bytes) bound to ``context``, as :meth:`seal` does, in
        this thread's scratch buffer: valid until the thread's next call, for a caller that writes it at once (a
        pack). Per object, nothing is allocated, zeroed or copied besides the encryption itself."""
        nonce = os.urandom(NONCE_BYTES)
        header = MAGIC + self._key_id + nonce
        aead = self._envelopes.aead(nonce)
        if not hasattr(aead, "encrypt_into"):  # an older pyca/cryptography
            return header + aead.encrypt(_FIRST_FINAL, plain, header + context)
        size = HEADER_BYTES + len(plain) + TAG_BYTES
        view = _scratch(size)
        view[:HEADER_BYTES] = header
        aead.encrypt_into(_FIRST_FINAL, plain, header + context, view[HEADER_BYTES:size])
        return view[:size]

    def _nonce(self, header: bytes, what: str) -> bytes:
        """Return the nonce of a well-formed header of this key; raise otherwise."""
        return header_nonce(header, MAGIC, self._key_id, what)

    def _open(self, aead, header: bytes, index: int, segment, final: bool, context: bytes, what: str) -> bytes:
        try:
            return aead.decrypt(_chunk_nonce(index, final), segment, header + context if final else header)
        except cryptography_library().InvalidTag:
            raise _tamper_error(what) from None

    def unseal(self, envelope, context: bytes, what: str) -> bytes:
        """Verify and decrypt a whole envelope held in memory."""
        view = memoryview(envelope)
        header = bytes(view[:HEADER_BYTES])
        aead = self._envelopes.aead(self._nonce(header, what))
        layout = _layout(len(view))
        if layout is None:
            raise _tamper_error(what)
        full, last = layout
        end = HEADER_BYTES + full * SEGMENT
        final = self._open(aead, header, full, view[end:end + last], True, context, what)
        if not full:
            return final
        parts = [self._open(aead, header, index, view[HEADER_BYTES + index * SEGMENT:HEADER_BYTES + (index + 1) * SEGMENT],
                            False, b"", what) for index in range(full)]
        parts.append(final)
        return b"".join(parts)

    def open_stream(self, handle: BinaryIO, size: int, context: bytes, what: str) -> Iterator[bytes]:
        """Yield the plaintext of an envelope file (read from its start) chunk by chunk.

        The final chunk is verified first (it binds the context and the length), so nothing is
        yielded from an envelope that was swapped, renamed or truncated; each chunk is verified
        before it is yielded.
        """
        header = handle.read(HEADER_BYTES)
        aead = self._envelopes.aead(self._nonce(header, what))
        layout = _layout(size)
        if layout is None:
            raise _tamper_error(what)
        full, last = layout
        handle.seek(HEADER_BYTES + full * SEGMENT)
        final = self._open(aead, header, full, _read_exactly(handle, last), True, context, what)
        if full:
            handle.seek(HEADER_BYTES)
            buffer = bytearray(SEGMENT)  # one buffer for every chunk read
            for index in range(full):
                if handle.readinto(buffer) != SEGMENT:
                    raise IntegrityError("An encrypted object was truncated while it was read.")
                yield self._open(aead, header, index, buffer, False, b"", what)
        yield final

    @staticmethod
    def envelope_key_id(handle: BinaryIO) -> Optional[str]:
        """Return the key id (hex) of an envelope file of this scheme, or None when it is not one."""
        header = handle.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES or header[:len(MAGIC)] != MAGIC:
            return None
        return header[len(MAGIC):len(MAGIC) + KEY_ID_BYTES].hex()


_SCRATCH = threading.local()


def _scratch(size: int) -> memoryview:
    """Return a writable view of at least ``size`` bytes, this thread's own (a new buffer only when it must grow)."""
    view = getattr(_SCRATCH, "view", None)
    if view is None or len(view) < size:
        view = _SCRATCH.view = memoryview(bytearray(max(size, SCRATCH_BYTES)))
    return view


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise IntegrityError("An encrypted object was truncated while it was read.")
    return data
