"""`python -m server` / `vsdream serve`: start the engine server; first stdout line = ready handshake."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .app import Server, is_loopback
from .auth import TokenError, create_token_file, load_token
from .config import Config
from .path_policy import PathPolicy
from .private_file import others_can_read
from .protocol import HELLO_TIMEOUT_S, TOKEN_ENV
from .tls import TlsSetupError, ensure_identity
from .worker import DEFAULT_JOB_FN


def default_runs_dir() -> Path:
    return Path(os.environ.get("VSDREAM_RUNS") or Path.home() / ".vsdream" / "runs")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vsdream serve", description=(
        "VSDream engine server. Prints one JSON line {\"event\": \"ready\", \"port\", ...} on stdout, then "
        f"serves the protocol of docs/protocol.md. The token comes from ${TOKEN_ENV} or --token-file "
        "(if neither is set, a random one is written to <runs-dir>/token)."))
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    ap.add_argument("--allow-remote", action="store_true",
                    help="serve other machines: TLS with a self-signed certificate kept in the runs folder "
                         "(clients pin the SHA-256 fingerprint printed at start); required for a non-loopback "
                         "--host; the token is still required")
    ap.add_argument("--runs-dir", type=Path, default=None, help="where run folders live (default ~/.vsdream/runs)")
    ap.add_argument("--token-file", type=Path, help="file holding the shared token")
    ap.add_argument("--token", help=argparse.SUPPRESS)
    ap.add_argument("--parent-pid", type=int, help="checkpoint running jobs and exit when this process exits")
    ap.add_argument("--device", default="auto",
                    help="engine device(s), comma-separated; one worker process each (e.g. cuda:0,cuda:1)")
    ap.add_argument("--resume-unfinished", action="store_true",
                    help="on start, resume jobs a previous server left unfinished")
    ap.add_argument("--cancel-grace", type=float, default=30.0,
                    help="seconds a cancelled job may take to checkpoint before its worker is killed")
    ap.add_argument("--hello-timeout", type=float, default=HELLO_TIMEOUT_S, help="seconds to wait for hello")
    ap.add_argument("--frame-timeout", type=float, default=30.0,
                    help="seconds a frame may take from its first byte to its last (plus 1 s per MiB of payload)")
    ap.add_argument("--trust-models", type=Path, action="append", default=[], metavar="DIR",
                    help="a folder whose files jobs may read when paths are confined (repeatable; the Hugging "
                         "Face cache is always trusted)")
    ap.add_argument("--confine-paths", action="store_true",
                    help="jobs read files only from their run folder and trusted folders (always on with "
                         "--allow-remote)")
    ap.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
    ap.add_argument("--max-queue", type=int, default=32, help="queued jobs before submit answers busy")
    ap.add_argument("--max-unauthenticated", type=int, default=64,
                    help="connections at once that have not authenticated yet; more are closed at once")
    ap.add_argument("--log-file", type=Path, help="log here instead of stderr")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ap.add_argument("--job-fn", default=DEFAULT_JOB_FN,
                    help="module:function the worker runs per job (benchmarks use server.bench:preview_flood)")
    args = ap.parse_args(argv)
    if args.token is not None:
        ap.error(f"the token never goes on the command line (other users can read it there); set {TOKEN_ENV} "
                 "or use --token-file")
    if not is_loopback(args.host) and not args.allow_remote:
        ap.error(f"--host {args.host} is not a loopback address; add --allow-remote to expose the engine "
                 "to the network (clients still need the token)")
    for dev in args.device.split(","):
        if dev.strip().split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            ap.error(f"--device {dev.strip()!r}: use auto, cpu, cuda, cuda:N or mps (comma-separated for several)")
    if not 0 <= args.port <= 65535:
        ap.error(f"--port {args.port}: use 0..65535 (0 picks a free port)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    handler = logging.FileHandler(args.log_file, encoding="utf-8") if args.log_file else logging.StreamHandler()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[handler])
    runs_dir = (args.runs_dir or default_runs_dir()).expanduser().resolve()
    try:
        token = load_token(args.token_file)
    except TokenError as exc:
        print(f"vsdream serve: {exc}", file=sys.stderr)
        return 2
    token_file = None
    if token is None:
        token, token_file = create_token_file(runs_dir)
    elif args.token_file is not None and others_can_read(args.token_file):
        logging.getLogger("vsdream.server").warning(
            "--token-file %s is readable by other users; run: chmod 600 %s", args.token_file, args.token_file)
    tls = None
    if args.allow_remote:
        try:
            tls = ensure_identity(runs_dir, args.host)
        except (TlsSetupError, OSError) as exc:
            print(f"vsdream serve: --allow-remote needs a TLS certificate: {exc}", file=sys.stderr)
            return 2
    devices = [d.strip() for d in args.device.split(",") if d.strip()] or ["auto"]
    config = Config(runs_dir=runs_dir, token=token, host=args.host, port=args.port, devices=devices,
                    parent_pid=args.parent_pid, resume_unfinished=args.resume_unfinished, job_fn=args.job_fn,
                    hello_timeout_s=args.hello_timeout, frame_timeout_s=args.frame_timeout,
                    heartbeat_s=args.heartbeat, cancel_grace_s=args.cancel_grace, max_queue=args.max_queue,
                    token_file=token_file, tls=tls, max_unauthenticated=max(1, args.max_unauthenticated),
                    path_policy=PathPolicy.for_server(args.allow_remote, args.confine_paths, args.trust_models))

    async def serve() -> int:
        return await Server(config).run()

    try:
        return asyncio.run(serve())
    except OSError as exc:  # e.g. the port is taken
        print(f"vsdream serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
