"""The devstack's own certificate authority and the one server certificate it signs.

Made with openssl at the first `up` (installed if missing) under `.devstack/tls/`, and kept:
Kafka's SASL_SSL listener and PostgreSQL serve the same certificate (names 127.0.0.1 and
localhost), and clients trust `ca.pem`. Nothing here is secret beyond the local machine: the
passwords are fixed, known to the tests, and printed by `scripts/devstack env`.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from .context import HOST, Context, need_tool, run

KAFKA_SASL_PORT = 9094
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
KAFKA_SASL_USER = "fanout"
KAFKA_SASL_PASSWORD = "fanout-scram-secret"
KEYSTORE_PASSWORD = "fanout-devstack-keystore"
PG_TLS_USER = "fanout_tls"  # may connect over TLS only (hostssl … scram-sha-256)
PG_TLS_PASSWORD = "fanout-tls-secret"
DAYS = 3650
_lock = threading.Lock()


@dataclass(frozen=True)
class Certs:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def keystore(self) -> Path:
        """PKCS12: the server key and certificate chain, for Kafka."""
        return self.dir / "server.p12"

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca, self.server_cert, self.server_key, self.keystore))


def certs_of(ctx: Context) -> Certs:
    return Certs(ctx.root / "tls")


def ensure(ctx: Context) -> Certs:
    """The CA and server certificate, made once (a half-made set is made again whole)."""
    certs = certs_of(ctx)
    with _lock:
        if certs.complete():
            return certs
        openssl = need_tool(ctx, "openssl", "openssl")
        ctx.log(f"tls: making a CA and a server certificate in {certs.dir}")
        tmp = certs.dir.with_name(f"tls.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _make(openssl, tmp)
        shutil.rmtree(certs.dir, ignore_errors=True)
        tmp.rename(certs.dir)
        certs.dir.chmod(0o755)
    return certs


def _make(openssl: str, out: Path) -> None:
    ca_key, ca = out / "ca.key", out / "ca.pem"
    key, csr, cert = out / "server.key", out / "server.csr", out / "server.pem"
    run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
         "-out", str(ca), "-days", str(DAYS), "-subj", "/CN=fanout devstack CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        "openssl (CA)",
    )  # fmt: skip
    run(
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
         "-subj", f"/CN={HOST}"],
        "openssl (server key)",
    )  # fmt: skip
    ext = out / "server.ext"
    ext.write_text(
        f"subjectAltName=IP:{HOST},DNS:localhost\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", str(DAYS), "-extfile", str(ext)],
        "openssl (server certificate)",
    )  # fmt: skip
    run(
        [openssl, "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca),
         "-name", "server", "-out", str(out / "server.p12"),
         "-passout", f"pass:{KEYSTORE_PASSWORD}"],
        "openssl (PKCS12 keystore)",
    )  # fmt: skip
    for path in (ca_key, key):
        path.chmod(0o600)
    for path in (ca, cert, out / "server.p12"):
        path.chmod(0o644)
