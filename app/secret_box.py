"""Webhook signing secrets at rest: Fernet tokens (cryptography's AES-128-CBC with an
HMAC-SHA256, authenticated) under the keys of SECRETS_ENCRYPTION_KEY.

The first key encrypts; every key decrypts (MultiFernet), so an operator rotates by putting
a new key first and keeping the old one after it until every row is re-encrypted. A token
no key opens is a ConfigError (a key was dropped too early), never a plaintext fallback.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app import config
from app.errors import ConfigError


def encrypt(plaintext: str) -> str:
    """The Fernet token of `plaintext` under the first configured key."""
    return _box(config.get_settings().secrets_encryption_keys).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of a token made by `encrypt` with any configured key."""
    try:
        return _box(config.get_settings().secrets_encryption_keys).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ConfigError(
            "SECRETS_ENCRYPTION_KEY cannot decrypt a stored webhook secret: keep the key that "
            "encrypted it after the new one until the rows are re-encrypted"
        ) from None


@functools.lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ConfigError("SECRETS_ENCRYPTION_KEY must be set (it encrypts webhook secrets)")
    return MultiFernet([Fernet(key) for key in keys])
