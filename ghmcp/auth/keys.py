"""Every secret-handling primitive in one place: token hashing, encryption at rest, signing.

All keys are derived from `MCP_SECRET_KEY` (a ring of keys, for rotation) with HKDF, each for one purpose, so a
leak of one derived key does not expose the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ghmcp.config import ConfigError

logger = logging.getLogger(__name__)


def new_secret() -> str:
    """A fresh opaque token: 256 bits (RFC 6749 §10.10 asks for at least 128)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps instead of a bearer secret: a leaked database yields no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


def s256(verifier: str) -> str:
    """PKCE S256 code challenge (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


MIN_KEY_LENGTH = 32


def parse_key_ring(value: str) -> list[str]:
    """`MCP_SECRET_KEY` as a ring: comma-separated, newest first; each key at least 32 characters."""
    ring = [part.strip() for part in value.split(",")]
    if not ring or any(len(key) < MIN_KEY_LENGTH for key in ring):
        raise ConfigError(
            f"MCP_SECRET_KEY must be one or more comma-separated keys of at least {MIN_KEY_LENGTH} characters each "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
        )
    return ring


def load_or_create_secret_key(configured: str | None, data_dir: Path) -> list[str]:
    """The configured key ring, or one key generated once into the data directory with mode 0600."""
    if configured is not None:
        return parse_key_ring(configured)
    path = data_dir / "secret_key"
    if not path.exists():
        _create_key_file(path)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"MCP_SECRET_KEY is read from {path}, which others can read: chmod 600 it, or set the key.")
    key = path.read_text().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"MCP_SECRET_KEY is read from {path}, which is empty or too short: delete it or set the key.")
    return [key]


def _create_key_file(path: Path) -> None:
    """Write a new key atomically: readers never see a half-written file, and of two processes
    starting together exactly one key wins (link() refuses to replace an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        os.link(temporary, path)
        logger.warning(
            "MCP_SECRET_KEY is not set: generated one into %s; keep that file safe, private and beside the store.",
            path.resolve(),
        )
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        os.unlink(temporary)


class Keyring:
    """Purpose-bound keys derived from every key of the ring: the first key encrypts and signs,
    every key decrypts and verifies, so keys can be rotated without signing everyone out."""

    def __init__(self, ring: list[str]) -> None:
        self._ring = [key.encode() for key in ring]
        self._tokens = self._fernet(b"github-token-encryption")
        self._client_secrets = self._fernet(b"client-secret-encryption")
        self._derivation_key = _derive(self._ring[0], b"token-derivation")
        # itsdangerous signs with the last key and verifies with all of them.
        self._cookie_keys = [_derive(key, b"cookie-signing") for key in reversed(self._ring)]

    def _fernet(self, purpose: bytes) -> MultiFernet:
        return MultiFernet([Fernet(base64.urlsafe_b64encode(_derive(key, purpose))) for key in self._ring])

    def check_values(self) -> list[str]:
        """A fingerprint per key (the first key's first): the store records one to detect a wrong key at start."""
        return [hmac.new(_derive(key, b"key-check"), b"key-check", hashlib.sha256).hexdigest() for key in self._ring]

    def request_state_keys(self) -> list[bytes]:
        """Keys for the SDK's `RequestStateSecurity` (the first seals, all open): the same on every replica."""
        return [_derive(key, b"mcp-request-state") for key in self._ring]

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a GitHub token for storage."""
        return self._tokens.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str | None:
        return _decrypt(self._tokens, ciphertext)

    def encrypt_client_secret(self, plaintext: str) -> str:
        return self._client_secrets.encrypt(plaintext.encode()).decode()

    def decrypt_client_secret(self, ciphertext: str) -> str | None:
        return _decrypt(self._client_secrets, ciphertext)

    def derive_secret(self, purpose: str, seed: str) -> str:
        """A secret reproducible only with the server key and `seed` (which is itself secret)."""
        digest = hmac.new(self._derivation_key, f"{purpose}\0{seed}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def signer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._cookie_keys,  # itsdangerous takes a list of keys (newest last) for rotation
            salt=purpose,
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def load_signed(self, purpose: str, value: str | None, max_age: int) -> Any:
        """The payload of a cookie or form field we signed, or None if absent, forged or too old."""
        if not value:
            return None
        try:
            return self.signer(purpose).loads(value, max_age=max_age)
        except BadSignature:
            return None


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


def _decrypt(fernet: MultiFernet, ciphertext: str) -> str | None:
    try:
        return fernet.decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None
