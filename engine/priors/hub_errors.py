"""Hugging Face hub failures as `WeightsMissing` errors that say which failure it was and what to do.

Four cases are told apart because their fixes differ: the repository is gone (removed, renamed
or private: use the mirror or a local copy; logging in does not bring a removed repo back), it is
gated (accept the licence and log in), the hub cannot be reached (network), or anything else.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import WeightsMissing
from .model_ids import fetch_command

_NETWORK_NAMES = {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "ProxyError",
                  "NetworkError", "RemoteProtocolError", "ConnectionError", "Timeout"}


def _is_network(exc: BaseException) -> bool:
    chain = [exc, exc.__cause__, exc.__context__]
    for e in chain:
        if e is None:
            continue
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in _NETWORK_NAMES for cls in type(e).__mro__):
            return True
    return False


def repo_gone(model_id: str) -> WeightsMissing:
    """The message for a repository that does not exist (or no longer does). Removed ids with a
    known mirror never get here: downloads go to the mirror (model_ids.mirror_of)."""
    return WeightsMissing(
        f"the Hugging Face hub has no repository '{model_id}' (removed, renamed or private)",
        hint="check the id on huggingface.co, or pass --model PATH to a local copy of the diffusers folder")


def from_hub_error(model_id: str, exc: BaseException, cache: Path) -> WeightsMissing:
    """Translate an exception raised while listing or downloading `model_id`."""
    try:
        from huggingface_hub.errors import (
            DisabledRepoError,
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # older huggingface_hub: same classes under utils
        from huggingface_hub.utils import (  # type: ignore
            DisabledRepoError,
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    if isinstance(exc, GatedRepoError):  # before RepositoryNotFoundError: it is a subclass
        return WeightsMissing(
            f"'{model_id}' is a gated repository: its licence must be accepted before downloading",
            hint=f"accept the licence on https://huggingface.co/{model_id}, log in with `hf auth login` "
                 f"(or set HF_TOKEN), then run: {fetch_command(model_id)}")
    if isinstance(exc, (RepositoryNotFoundError, DisabledRepoError)):
        return repo_gone(model_id)
    if isinstance(exc, RevisionNotFoundError):
        return WeightsMissing(f"'{model_id}' has no 'main' revision on the hub",
                              hint="pass --model PATH to a local copy of the diffusers folder")
    if _is_network(exc):
        return WeightsMissing(
            f"could not reach the Hugging Face hub to download '{model_id}' into {cache} "
            f"({type(exc).__name__})",
            hint=f"check the connection (proxy, HF_ENDPOINT), then run: {fetch_command(model_id)}; "
                 "or pass --model PATH to a local diffusers folder")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status is not None and status >= 500:
        return WeightsMissing(f"the Hugging Face hub answered HTTP {status} for '{model_id}'",
                              hint=f"the hub is having trouble: try again later with {fetch_command(model_id)}")
    return WeightsMissing(f"could not download '{model_id}' into {cache} ({type(exc).__name__}: {exc})",
                          hint=f"check the model id, then run: {fetch_command(model_id)}")
