"""Server side of remote engines: a self-signed certificate, made once and reused, and its context.

`--allow-remote` means TLS, always: the token and every frame would otherwise cross the network
in the clear. The certificate needs no authority: clients pin its SHA-256 fingerprint (see
server/tls_pin.py), so it stays valid as long as the files are kept. They live beside the
server-made token in the runs folder; the key is owner-only (server/private_file.py).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from .private_file import make_private, warn_if_unprotected, write_private
from .tls_pin import fingerprint_of_der

log = logging.getLogger("vsdream.server")
CERT_NAME, KEY_NAME = "tls_cert.pem", "tls_key.pem"
VALID_DAYS = 3650  # pinning, not expiry, decides trust; a long life keeps the fingerprint stable


class TlsSetupError(RuntimeError):
    """The certificate could not be made or loaded; the message names the file and the fix."""


@dataclass(frozen=True)
class TlsIdentity:
    cert_path: Path
    key_path: Path
    fingerprint: str  # SHA-256 of the DER certificate, AB:CD:… form
    created: bool  # made on this start (a client must pin the new fingerprint)


def ensure_identity(folder: Path, host: str) -> TlsIdentity:
    """Load <folder>/tls_cert.pem + tls_key.pem, or create both when either is missing."""
    cert_path, key_path = Path(folder) / CERT_NAME, Path(folder) / KEY_NAME
    created = False
    if not (cert_path.is_file() and key_path.is_file()):
        cert_pem, key_pem = _self_signed(host)
        write_private(key_path, key_pem)
        write_private(cert_path, cert_pem)
        created = True
    elif make_private(key_path):
        log.warning("%s was readable by other users; narrowed it to owner-only (0600)", key_path)
    warn_if_unprotected(key_path)
    identity = TlsIdentity(cert_path, key_path, _fingerprint(cert_path), created)
    server_context(identity)  # fail now, with the file names, if the pair does not load
    return identity


def server_context(identity: TlsIdentity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"cannot load the TLS certificate {identity.cert_path} with key {identity.key_path} "
                            f"({exc}); delete both files to make a new pair (clients must then pin the new "
                            "fingerprint)") from None
    return ctx


def _fingerprint(cert_path: Path) -> str:
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    except (OSError, ValueError) as exc:
        raise TlsSetupError(f"cannot read the TLS certificate {cert_path} ({exc}); delete it and "
                            f"{KEY_NAME} beside it to make a new pair") from None
    return fingerprint_of_der(der)


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): ECDSA P-256, names for localhost, this host and `host`."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise TlsSetupError("--allow-remote serves TLS and needs the 'cryptography' package in the engine's "
                            "environment: pip install cryptography (it is in the engine's requirements)") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "VSDream engine"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VSDream (self-signed, pin its fingerprint)")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for candidate in {host, socket.gethostname()}:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(candidate)))
        except ValueError:
            if candidate and candidate != "localhost":
                alt.append(x509.DNSName(candidate))
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(_unique(alt)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _unique(names: list) -> list:
    out: list = []
    for n in names:
        if n not in out:
            out.append(n)
    return out
