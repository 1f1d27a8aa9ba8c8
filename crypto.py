"""Every secret-handling primitive in one place: token hashing, encryption at rest, signing.

All keys are derived from the one `MCP_SECRET_KEY` with HKDF, each for one purpose, so a
leak of one derived key does not expose the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeTimedSerializer

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


def load_or_create_secret_key(configured: str | None, data_dir: Path) -> str:
    """The configured key, or one generated once into the data directory with mode 0600."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    logger.warning("MCP_SECRET_KEY is not set: generated one into %s; keep that file safe and private.", path)
    return key


class Keyring:
    """Purpose-bound keys derived from the server secret."""

    def __init__(self, secret_key: str) -> None:
        self._master = secret_key.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(self._derive(b"github-token-encryption")))
        self._derivation_key = self._derive(b"token-derivation")
        self._cookie_key = self._derive(b"cookie-signing")

    def _derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(self._master)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str | None:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            return None

    def derive_secret(self, purpose: str, seed: str) -> str:
        """A secret reproducible only with the server key and `seed` (which is itself secret)."""
        digest = hmac.new(self._derivation_key, f"{purpose}\0{seed}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def signer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._cookie_key, salt=purpose)

    def load_signed(self, purpose: str, value: str | None, max_age: int) -> Any:
        """The payload of a cookie or form field we signed, or None if absent, forged or too old."""
        if not value:
            return None
        try:
            return self.signer(purpose).loads(value, max_age=max_age)
        except BadSignature:
            return None
