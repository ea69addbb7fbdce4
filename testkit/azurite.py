"""Run the Azurite storage emulator (blob + queue + table) for tests and local use.

:class:`AzuriteServer` starts ``node_modules/.bin/azurite`` on loopback, in memory, without
telemetry and without the API-version check (azure-storage-blob 12.31 sends a version
Azurite 3.37 rejects), waits until every service accepts connections, and kills the
whole process group on :meth:`~AzuriteServer.stop`. The first start takes free ports
(port 0); later starts reuse them, so a stopped server can come back at the same address
(empty: storage is in memory).

With :class:`TlsFiles` it serves HTTPS, and ``oauth=True`` adds ``--oauth basic``, which
accepts Bearer tokens (see :mod:`testkit.credentials`) and so user delegation keys.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
ACCOUNT_NAME: Final = "devstoreaccount1"
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""The well-known, public development-storage key (not a secret)."""
HOST: Final = "127.0.0.1"
SERVICES: Final = ("blob", "queue", "table")
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (\S+)")


class AzuriteNotInstalledError(RuntimeError):
    """``node_modules/.bin/azurite`` is missing: run ``scripts/setup.sh`` (``npm ci``)."""


def azurite_executable() -> Path:
    """The Azurite launcher: ``$AZURITE_BIN`` or the repository's ``node_modules/.bin/azurite``.

    Raises :class:`AzuriteNotInstalledError` when it does not exist.
    """
    path = Path(os.environ.get("AZURITE_BIN") or REPO_ROOT / "node_modules" / ".bin" / "azurite")
    if not path.exists():
        raise AzuriteNotInstalledError(f"Azurite is not installed at {path}: run scripts/setup.sh (npm ci)")
    return path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate and its unencrypted private key, for ``--cert`` / ``--key``."""

    cert_path: Path
    key_path: Path


def make_self_signed_cert(directory: Path, *, host: str = HOST, days: int = 2) -> TlsFiles:
    """Write a self-signed RSA-2048 certificate for ``host`` (IP or DNS SAN) into ``directory``.

    The certificate is its own CA, so clients trust it with ``cafile=cert_path``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([san, x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    files.key_path.chmod(0o600)
    return files


class AzuriteServer:
    """One Azurite process on loopback; endpoints are valid once :meth:`start` returned."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        oauth: bool = False,
        startup_timeout: float = 60.0,
        executable: Path | None = None,
    ) -> None:
        """Prepare (not start) a server whose process runs in ``workdir``.

        ``oauth=True`` needs ``tls`` (Azurite accepts OAuth only over HTTPS).
        """
        if oauth and tls is None:
            raise ValueError("Azurite's --oauth needs HTTPS (tls)")
        self.workdir = workdir
        self.tls = tls
        self.oauth = oauth
        self.startup_timeout = startup_timeout
        self.executable = executable or azurite_executable()
        self._ports: dict[str, int] = {}
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    # --- addresses ---------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.tls else "http"

    def _endpoint(self, service: str) -> str:
        if service not in self._ports:
            raise RuntimeError("Azurite has not been started yet")
        return f"{self.scheme}://{HOST}:{self._ports[service]}/{ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        """``http(s)://127.0.0.1:PORT/devstoreaccount1`` for the blob service."""
        return self._endpoint("blob")

    @property
    def queue_endpoint(self) -> str:
        """The queue service endpoint (same shape as :attr:`blob_endpoint`)."""
        return self._endpoint("queue")

    @property
    def table_endpoint(self) -> str:
        """The table service endpoint (same shape as :attr:`blob_endpoint`)."""
        return self._endpoint("table")

    @property
    def connection_string(self) -> str:
        """An explicit devstoreaccount1 connection string naming this server's endpoints."""
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def output(self) -> str:
        """What Azurite printed so far (startup lines; access logs are off)."""
        return "".join(self._output)

    # --- lifecycle ---------------------------------------------------------------------

    def _command(self) -> list[str]:
        command = [str(self.executable)]
        for service in SERVICES:
            command += [f"--{service}Host", HOST, f"--{service}Port", str(self._ports.get(service, 0))]
        command += [
            "--inMemoryPersistence",
            # A ceiling, not a reservation: one server lives for a whole test session, and the
            # suite's WAVs, MP3s and captions (a 30-minute WAV alone is 86 MB) outgrew 256 MB.
            "--extentMemoryLimit",
            "2048",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ]
        if self.tls:
            command += ["--cert", str(self.tls.cert_path), "--key", str(self.tls.key_path)]
        if self.oauth:
            command += ["--oauth", "basic"]
        return command

    def start(self) -> None:
        """Start Azurite and wait until blob, queue and table accept TCP connections.

        Raises ``RuntimeError`` (with Azurite's output) if it exits or is not ready within
        ``startup_timeout`` seconds. Does nothing if it is already running.
        """
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._output = []
        process = subprocess.Popen(
            self._command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, killed as a whole
        )
        self._process = process
        _live_servers.add(self)
        ports: dict[str, int] = {}
        ready = threading.Event()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self._output.append(line)
                match = _LISTENING.search(line)
                if match:
                    port = match.group(2).rstrip("/").rsplit(":", 1)[-1]
                    ports[match.group(1).lower()] = int(port)
                    if len(ports) == len(SERVICES):
                        ready.set()
            ready.set()  # EOF: the process ended

        threading.Thread(target=pump, name="azurite-output", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        if not ready.wait(self.startup_timeout) or len(ports) < len(SERVICES):
            self.stop()
            raise RuntimeError(f"Azurite did not start: {self.output.strip() or 'no output'}")
        self._ports = ports
        for port in ports.values():
            _wait_for_port(port, deadline)

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL after 5 s) and wait for it."""
        process, self._process = self._process, None
        _live_servers.discard(self)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        # Children that outlived the leader (there should be none) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> AzuriteServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _wait_for_port(port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Azurite is not accepting connections on port {port}") from None
            time.sleep(0.1)


_live_servers: set[AzuriteServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort: never leave an Azurite behind when the interpreter exits."""
    for server in list(_live_servers):
        server.stop()
