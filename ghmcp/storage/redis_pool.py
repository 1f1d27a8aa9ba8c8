"""The Redis connection pool, shared by the store and the rate limiter: it hands out live connections
and never sends a command twice.

After Redis restarts or fails over, every idle pooled connection is dead. Sent on, it would fail one
real request (503) although Redis is back. So before a connection is handed out, while nothing has
been sent on it yet, it is checked:
- one the server closed (its end of file has arrived) is replaced by a new connection: the stock
  check of redis-py 8, which it skips when RESP3 maintenance notifications are on, so they are off;
- one idle for more than `HEALTH_CHECK_SECONDS` is asked PING first (PING changes nothing, so it
  may be re-sent), and replaced by a new connection if that fails: this finds a connection that
  died silently (a failover behind a proxy, a dropped NAT entry).
Connecting sends no command, so a refused connection is simply an unavailable store.

A command itself is sent once (`NO_RESEND`). redis-py could resend a command whose connection
failed after it was written, when the reply is lost; Redis may have run it. Single-use steps
(code exchange, refresh rotation, taking a pending sign-in: `lua.py`) must never run twice, so
nothing is resent: a lost reply is a 503, and the client's retry meets "already used" (a refused
grant), the safe outcome. No URL option can turn resending back on.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

TIMEOUT_SECONDS = 5
HEALTH_CHECK_SECONDS = 5
HOST_MISMATCH = {62, 64}  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH


def no_resend() -> Retry:
    """The retry policy of every connection: zero retries, so no command is ever sent twice."""
    return Retry(NoBackoff(), 0)


class LivePool(ConnectionPool):
    """A pool whose connections are checked before use, while resending is still provably safe."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await super().ensure_connection(connection)  # connects; replaces a connection the server closed
        untyped: Any = connection  # redis-py leaves check_health and connect untyped
        try:
            await untyped.check_health()  # PING, if idle for over HEALTH_CHECK_SECONDS
        except (RedisConnectionError, RedisTimeoutError):
            await connection.disconnect()  # only PING was sent on it: the caller's command was not
            await untyped.connect()


def open_pool(url: str, *, ca_file: str | None = None) -> ConnectionPool:
    """The process's pool for `url` (`rediss://` verifies the server against `ca_file`, or the system's CAs)."""
    options: dict[str, Any] = {"ssl_ca_certs": ca_file} if ca_file else {}
    pool = LivePool.from_url(
        url,
        decode_responses=True,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_SECONDS,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        retry=no_resend(),  # a URL's retry_on_timeout only adds errors to retry on, zero times
        **options,
    )
    return pool


def tls_refusal(error: BaseException) -> str | None:
    """The start-up sentence for a Redis server whose TLS certificate was refused; None for any other failure."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    if cause.verify_code in HOST_MISMATCH:
        return (
            "MCP_STORAGE_URL names the Redis server by a host name its TLS certificate does not list: "
            "use a name the certificate lists."
        )
    return (
        "MCP_REDIS_CA_FILE does not name the CA that signed the Redis server's TLS certificate: "
        "set it to that CA's PEM file."
    )
