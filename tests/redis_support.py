"""A real `redis-server` (Debian's package) for the tests: own port, own directory, persistence on.

Absent: the tests that need it skip, except under CI=true where they fail.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.redis_tls_support import SERVER_NAME, TlsFiles
from tests.support import free_port, unavailable

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_redis() -> None:
    if not Path(REDIS_SERVER).exists():
        unavailable("redis-server is missing (install Debian's redis-server package to run the Redis tests)")


@dataclass
class RedisServer:
    """With `tls`, it serves TLS only (no plain port), on `localhost`, the one name in its certificate."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://{SERVER_NAME}:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.tls:
            return redis.Redis(
                host=SERVER_NAME, port=self.port, socket_timeout=5, ssl=True, ssl_ca_certs=str(self.tls.ca_cert)
            )
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(self.tls.server_cert), "--tls-key-file", str(self.tls.server_key)]
            listen += ["--tls-ca-cert-file", str(self.tls.ca_cert)]
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *listen,
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--bind",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    client.close()
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start: {(self.directory / 'redis.log').read_text()}")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the append-only file is flushed first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()


@contextlib.contextmanager
def running_redis(directory: Path, tls: TlsFiles | None = None) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(directory, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()
