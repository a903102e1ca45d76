"""Remote engines: TLS with a pinned self-signed certificate; owner-only token and key files.

Real server subprocesses on 127.0.0.1, real sockets and files; the client is server/tls_pin.py,
the very module the add-on bundles and uses for its remote connection.
"""
from __future__ import annotations

import hashlib
import os
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server import protocol as P
from server import tls_pin
from server.launcher import ServerProcess
from server.private_file import write_private
from server.tls import CERT_NAME, KEY_NAME, ensure_identity

ROOT = Path(__file__).resolve().parent.parent
LIGHT = ("--device", "cpu", "--job-fn", "server.bench:preview_flood")
POSIX = os.name == "posix"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert_sha256(cert: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()


# ------------------------------------------------------------------ pure logic
@pytest.mark.parametrize("spelling", [
    "AB:CD:" + "01:" * 29 + "EF",
    "abcd" + "01" * 29 + "ef",
    "  SHA256:ab:CD:" + "01:" * 29 + "eF ",
    "ab cd " + "01 " * 29 + "ef",
])
def test_fingerprint_spellings_normalise_to_one_form(spelling):
    assert tls_pin.normalize_fingerprint(spelling) == "abcd" + "01" * 29 + "ef"
    assert tls_pin.fingerprints_match(spelling, "AB:CD:" + "01:" * 29 + "EF")
    assert not tls_pin.fingerprints_match(spelling, "AB:CE:" + "01:" * 29 + "EF")


@pytest.mark.parametrize("bad, says", [("ab:cd", "found 4 hex digits"), ("zz" * 32, "'z' that are not hex"),
                                       ("", "found 0 hex digits")])
def test_malformed_fingerprint_is_named_before_connecting(bad, says):
    with pytest.raises(ValueError) as err:
        tls_pin.normalize_fingerprint(bad)
    assert says in str(err.value) and "64" in str(err.value) and "engine's start-up output" in str(err.value)


def test_client_context_pins_instead_of_trusting_a_ca():
    ctx = tls_pin.client_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.skipif(not POSIX, reason="mode bits do not restrict readers on Windows (the profile ACL does)")
def test_write_private_replaces_a_world_readable_file_with_an_owner_only_one(tmp_path):
    path = tmp_path / "secret"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, b"new")
    assert _mode(path) == 0o600, oct(_mode(path))
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temp left


@pytest.mark.skipif(not POSIX, reason="mode bits do not restrict readers on Windows (the profile ACL does)")
def test_identity_is_reused_and_a_loose_key_is_narrowed(tmp_path):
    first = ensure_identity(tmp_path, "127.0.0.1")
    assert first.created and _mode(tmp_path / KEY_NAME) == 0o600
    os.chmod(tmp_path / KEY_NAME, 0o644)
    again = ensure_identity(tmp_path, "127.0.0.1")
    assert not again.created and again.fingerprint == first.fingerprint
    assert _mode(tmp_path / KEY_NAME) == 0o600, "a group/other-readable key must be narrowed to 0600"


# --------------------------------------------------------------- real servers
def test_server_rewrites_a_0644_token_file_owner_only(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    token_file = runs / "token"
    token_file.write_text("old-token\n")
    os.chmod(token_file, 0o644)
    env = {k: v for k, v in os.environ.items() if k != P.TOKEN_ENV}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", "0", "--runs-dir", str(runs), *LIGHT],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT))
    try:
        ready = P.parse_ready_line(proc.stdout.readline())
        assert Path(ready["token_file"]) == token_file.resolve()
        token = token_file.read_text().strip()
        assert token and token != "old-token"
        if POSIX:
            assert _mode(token_file) == 0o600, f"token file mode {oct(_mode(token_file))}, want 0o600"
        chan, _ = P.Channel.connect("127.0.0.1", ready["port"], token, timeout=10)  # the new token works
        chan.close()
        assert not ready["tls"] and "fingerprint" not in ready
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    runs = tmp_path_factory.mktemp("remote_runs")
    with ServerProcess(runs, "--allow-remote", *LIGHT) as srv:
        yield srv


def test_allow_remote_serves_tls_and_announces_the_fingerprint(remote):
    ready = remote.ready
    assert ready["tls"] is True
    cert = Path(ready["cert_file"])
    assert cert.parent == remote.runs_dir.resolve() and cert.name == CERT_NAME
    assert tls_pin.normalize_fingerprint(ready["fingerprint"]) == _cert_sha256(cert)
    if POSIX:
        assert _mode(cert.parent / KEY_NAME) == 0o600
    log = remote.log_tail()
    assert "REMOTE MODE" in log and "all traffic is TLS" in log and ready["fingerprint"] in log
    assert "new this start" in log


def test_pinned_tls_session_pings_and_lists_jobs(remote):
    ready_fp = remote.ready["fingerprint"].replace(":", "").lower()  # pasted without colons, lower case
    chan, welcome = tls_pin.connect_channel("127.0.0.1", remote.port, remote.token, ready_fp)
    try:
        assert welcome.type == "welcome" and isinstance(chan.sock, ssl.SSLSocket)
        assert tls_pin.fingerprints_match(ready_fp, tls_pin.fingerprint_of_der(chan.sock.getpeercert(True)))
        assert P.raise_for_error(chan.request(P.ping("n1"), timeout=10))["nonce"] == "n1"
        jobs = P.raise_for_error(chan.request(P.list_jobs(), timeout=10))
        assert jobs.type == "jobs" and jobs["jobs"] == [] and len(jobs["workers"]) == 1
    finally:
        chan.close()


def test_wrong_fingerprint_is_refused_with_both_fingerprints(remote):
    wrong = "00" * 32
    with pytest.raises(tls_pin.FingerprintMismatch) as err:
        tls_pin.connect_channel("127.0.0.1", remote.port, remote.token, wrong, timeout=10)
    msg = str(err.value)
    assert tls_pin.format_fingerprint(wrong) in msg and remote.ready["fingerprint"] in msg
    assert "Refused" in msg and "preferences" in msg
    chan = remote.connect()  # the server carries on
    assert chan.request(P.ping(), timeout=10).type == "pong"
    chan.close()


def test_plaintext_client_fails_cleanly_and_the_server_keeps_serving(remote):
    t0 = time.monotonic()
    with pytest.raises((P.ProtocolError, OSError)):
        P.Channel.connect("127.0.0.1", remote.port, remote.token, timeout=10)
    assert time.monotonic() - t0 < 8, "a plaintext client must be turned away, not left hanging"
    chan = remote.connect()
    assert chan.request(P.ping(), timeout=10).type == "pong"
    chan.close()
    assert remote.proc.poll() is None


def test_certificate_is_reused_on_the_next_start(remote, tmp_path):
    # a second server on the same runs folder (the first one keeps running) keeps the fingerprint
    with ServerProcess(remote.runs_dir, "--allow-remote", *LIGHT, log_path=tmp_path / "second.log") as srv:
        assert srv.ready["fingerprint"] == remote.ready["fingerprint"]
        assert "new this start" not in srv.log_tail()
        chan = srv.connect()
        assert chan.request(P.ping(), timeout=10).type == "pong"
        chan.close()


def test_loopback_without_allow_remote_stays_plain(tmp_path):
    with ServerProcess(tmp_path / "runs", *LIGHT) as srv:
        assert srv.ready["tls"] is False and "fingerprint" not in srv.ready and srv.fingerprint is None
        assert not (tmp_path / "runs" / CERT_NAME).exists()
        chan, _ = P.Channel.connect("127.0.0.1", srv.port, srv.token, timeout=10)
        assert chan.request(P.ping(), timeout=10).type == "pong"
        chan.close()
        with pytest.raises(tls_pin.PinError) as err:  # a pinned client says plainly what is wrong
            tls_pin.connect_channel("127.0.0.1", srv.port, srv.token, "00" * 32, timeout=10)
        assert "not serving TLS" in str(err.value) and "--allow-remote" in str(err.value)
        assert "REMOTE MODE" not in srv.log_tail()


@pytest.mark.skipif(not POSIX, reason="mode bits do not restrict readers on Windows (the profile ACL does)")
def test_a_world_readable_token_file_given_by_the_user_is_named_in_the_log(tmp_path):
    token_file = tmp_path / "my_token"
    token_file.write_text("user-chosen-token\n")
    os.chmod(token_file, 0o644)
    srv = ServerProcess(tmp_path / "runs", "--token-file", str(token_file), *LIGHT, token="user-chosen-token")
    with srv:
        assert srv.connect().request(P.ping(), timeout=10).type == "pong"
        log = srv.log_tail()
    assert f"--token-file {token_file} is readable by other users" in log and "chmod 600" in log
    assert _mode(token_file) == 0o644, "a file the user owns and named is reported, not changed behind their back"
