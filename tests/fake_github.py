"""The test suite's GitHub: the stand-in of ``github_standin`` served on its own port in a thread.

Tests turn the stand-in's knobs (``add_user``, ``sign_in``, ``deny_next``, ``expiring_tokens``,
``advance_clock``, ``count``, ``revocations``...) from the test thread while uvicorn serves it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from ghmcp.standin import Comment as FakeComment
from ghmcp.standin import GitHubStandIn as FakeGitHub
from ghmcp.standin import Repo as FakeRepo
from ghmcp.standin import pkce_challenge

__all__ = ["FakeComment", "FakeGitHub", "FakeRepo", "pkce_challenge", "running_fake_github"]


@contextmanager
def running_fake_github(fake: FakeGitHub, *, host: str = "127.0.0.1", startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``fake`` on a free port in a daemon thread; yields its base URL.

    The listening socket is bound here and handed to uvicorn, so there is no
    window in which another process could grab the port.
    """
    # proto must be IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on such
    # sockets, and without it every keep-alive request stalls ~40 ms on Nagle.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        fake.app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fake-github", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("fake GitHub server thread died during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake GitHub server did not start within {startup_timeout} s")
            time.sleep(0.005)
        with socket.create_connection((host, port), timeout=startup_timeout):
            pass  # it answers TCP; uvicorn's `started` is set after listen()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
