"""API tokens: random, shown once, stored as a keyed hash (HMAC-SHA256 with a server pepper)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "cttv2_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()
