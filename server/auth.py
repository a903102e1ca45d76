"""The shared secret: from VSDREAM_TOKEN or a token file, never the command line; compared in constant time.

Token files the server writes are owner-only (server/private_file.py says how, per OS)."""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from .private_file import write_private
from .protocol import TOKEN_ENV


class TokenError(ValueError):
    """The token source is unusable; the message says which and how to fix it."""


def load_token(token_file: Path | None, env: dict[str, str] | None = None) -> str | None:
    """The token from --token-file (preferred when given) or the environment; None when neither is set."""
    env = os.environ if env is None else env
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(f"--token-file {token_file}: cannot read it ({exc.strerror})") from None
        if not token:
            raise TokenError(f"--token-file {token_file} is empty; put a random string in it")
        return token
    token = env.get(TOKEN_ENV, "").strip()
    return token or None


def create_token_file(folder: Path) -> tuple[str, Path]:
    """A fresh random token saved as <folder>/token, readable by this user only (CLI convenience).

    Written as a new 0600 file renamed over any old one, so a token file left with a wider mode
    (0644 from an editor or an older version) never keeps it."""
    token = secrets.token_urlsafe(32)
    path = write_private(Path(folder) / "token", (token + "\n").encode("utf-8"))
    return token, path


def token_matches(expected: str, offered: object) -> bool:
    """Constant-time comparison; anything but a string is a mismatch."""
    if not isinstance(offered, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))
