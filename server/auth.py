"""The shared secret: from VSDREAM_TOKEN or a token file, never the command line; compared in constant time."""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

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
    """A fresh random token saved as <folder>/token, readable by this user only (CLI convenience)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "token"
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, path


def token_matches(expected: str, offered: object) -> bool:
    """Constant-time comparison; anything but a string is a mismatch."""
    if not isinstance(offered, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))
