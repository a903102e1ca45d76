"""What one client connection may ask of the rest of the server: two narrow interfaces.

connection.py depends on these (and on config.Config), never on app.Server or manager.JobManager:
the app passes its JobManager in as `JobsApi` and itself as `ServerLink`. So there is no import
cycle, and everything a client request can reach is listed here in one place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .job import Job
from .manager import Subscriber


class JobsApi(Protocol):
    """The job manager's requests, as a connection uses them (manager.JobManager implements it)."""

    spool_dir: Path  # uploads are spooled here before submit moves them into their run folder
    devices: list[str]  # told to each client in its welcome

    def get(self, job_id: str) -> Job: ...  # raises ProtocolError(unknown_job)
    async def submit(self, header: dict[str, Any], mesh: bytes = b"", mesh_file: Path | None = None) -> Job: ...
    async def resume(self, job: Job) -> Job: ...
    async def cancel(self, job: Job, reason: str = "user") -> str: ...
    def queue_position(self, job: Job) -> int: ...
    def job_page(self, offset: int = 0, limit: int | None = None) -> dict[str, Any]: ...  # list_jobs
    def workers(self) -> list[dict[str, Any]]: ...
    def unreadable_runs(self) -> list[dict[str, Any]]: ...
    def unreadable_count(self) -> int: ...
    def subscribe(self, client: Subscriber, job: Job, after_seq: int, previews: bool) -> None: ...
    def unsubscribe(self, client: Subscriber, job: Job | None = None) -> None: ...
    async def preview_payload(self, job: Job, event: dict[str, Any]) -> bytes | None: ...
    def artifact_path(self, job: Job, name: str) -> Path: ...
    def spec_for(self, header: dict[str, Any]) -> Any: ...  # the JobSpec a submit-shaped header asks for (estimate)


class ServerLink(Protocol):
    """The accepting server: who it is (for the welcome), how to stop it, and where a connection signs off."""

    version: str
    pid: int

    def request_stop(self, reason: str) -> None: ...
    def connection_authenticated(self, conn: Any) -> None: ...  # it no longer counts as unauthenticated
    def connection_closed(self, conn: Any) -> None: ...
