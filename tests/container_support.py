"""A real dockerd, started and stopped by the test, and the images the compose stack runs.

No image registry is used: the base image is built from Debian's packages with debootstrap (the
same one stands in for `python:3.11-slim`, `redis:7` and `caddy:2`) and cached in the daemon's data
root between runs. Debian's own client (/usr/bin/docker) talks to Debian's dockerd 20.10.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support import ROOT

DOCKER = "/usr/bin/docker"  # Debian's client, built for the daemon; a newer one on PATH may not match it
PROGRAMS = ("dockerd", "docker-compose", "debootstrap")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ghmcp-container"
BASE_IMAGE = "ghmcp-test-base:bookworm"
# python3 for the server; redis-server and caddy so the same image stands in for redis:7 and caddy:2.
BASE_PACKAGES = "python3,python3-venv,ca-certificates,redis-server,caddy"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"


def require_docker() -> None:
    """Skip without docker, unless CI=true, where a missing program fails the test (.ci/run installs them)."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None] + ([] if Path(DOCKER).exists() else [DOCKER])
    problem = f"{', '.join(missing)} not installed (apt-get install docker.io docker-compose debootstrap)"
    if not missing and os.geteuid() != 0:
        missing, problem = ["root"], "not running as root: dockerd and debootstrap need it"
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {problem}")
    if missing:
        pytest.skip(problem)


def run(command: list[str], env: dict[str, str], timeout: float, **kwargs: Any) -> str:
    """Run a command to completion (bounded); its output, or an error carrying that output."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return str(done.stdout)


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired, OSError):
            if found := check():
                return found
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def logs(env: dict[str, str], container: str) -> str:
    """A container's output: the server logs to stderr, which `run` would leave out."""
    done = subprocess.run([DOCKER, "logs", container], env=env, capture_output=True, text=True, timeout=30, check=True)
    return str(done.stdout + done.stderr)


@contextlib.contextmanager
def running_dockerd() -> Iterator[dict[str, str]]:
    """A dockerd of our own (own socket, own data root under CACHE); yields the environment that reaches it.
    Host networking only: no bridge and no iptables rules are made on the machine. One test run at a time
    uses the data root (a lock file); containers a killed run left there are removed first."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        wait_for("the cache lock (another container test is running)", lambda: _try_lock(lock), 240, 1)
        with _dockerd() as env:
            leftovers = run([DOCKER, "ps", "--all", "--quiet"], env, 30).split()
            if leftovers:
                run([DOCKER, "rm", "--force", "--volumes", *leftovers], env, 120)
            run([DOCKER, "volume", "prune", "--force"], env, 120)
            yield env


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _dockerd() -> Iterator[dict[str, str]]:
    run_dir = Path(tempfile.mkdtemp(prefix="ghmcp-d-", dir="/tmp"))  # short: a socket path has at most 107 bytes
    socket_path = run_dir / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}", "DOCKER_BUILDKIT": "1"}
    with (CACHE / "dockerd.log").open("ab") as log:
        daemon = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                f"--data-root={CACHE / 'docker'}",
                f"--exec-root={run_dir / 'exec'}",
                f"--pidfile={run_dir / 'docker.pid'}",
                f"--host=unix://{socket_path}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for("dockerd answering", lambda: daemon.poll() is None and run([DOCKER, "version"], env, 10), 60)
        yield env
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        # dockerd leaves its network namespace bind-mounted under the exec root: unmount it, then remove it all.
        for mount_point in mounts_under(run_dir):
            subprocess.run(["umount", "--lazy", mount_point], check=True, timeout=30)
        shutil.rmtree(run_dir)


def mounts_under(directory: Path) -> list[str]:
    """Mount points inside `directory`, deepest first (from /proc/self/mountinfo)."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if Path(p).is_relative_to(directory)), key=len, reverse=True)


def base_image(env: dict[str, str]) -> str:
    """The Debian bookworm base image, from debootstrap (about a minute) unless the daemon has it already."""
    with contextlib.suppress(RuntimeError):
        run([DOCKER, "image", "inspect", BASE_IMAGE], env, 30)
        return BASE_IMAGE
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        root = Path(scratch) / "root"
        command = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(root)]
        run([*command, DEBIAN_MIRROR], env, 600)
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            run([DOCKER, "import", "-", BASE_IMAGE], env, 300, stdin=tar.stdout)
    return BASE_IMAGE


def build_image(env: dict[str, str], base: str, tag: str) -> None:
    """deploy/Dockerfile on `base`, with the host's CA bundle as the extra CA (the TLS proxy's is in it)."""
    command = [DOCKER, "build", "--network=host", "--file=deploy/Dockerfile", f"--tag={tag}"]
    command += [f"--build-arg=BASE_IMAGE={base}", f"--secret=id=extra_ca,src={HOST_CA}", "."]
    run(command, env, 600, cwd=ROOT)


@dataclass
class Stack:
    """The compose project: `docker-compose` 1.29 with deploy/compose.yaml and the test's variables (from the
    environment, and `env_file` rather than a developer's deploy/.env)."""

    project: str
    env: dict[str, str]
    env_file: Path

    def compose(self, *args: str, timeout: float = 120) -> str:
        command = ["docker-compose", "--file", str(COMPOSE_FILE), "--env-file", str(self.env_file)]
        command += ["--project-name", self.project, *args]
        return run(command, self.env, timeout)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def inspect(self, service: str) -> dict[str, Any]:
        answer: list[dict[str, Any]] = json.loads(run([DOCKER, "inspect", self.container(service)], self.env, 30))
        return answer[0]

    def health(self, service: str) -> str:
        return str(self.inspect(service)["State"].get("Health", {}).get("Status", "none"))

    def wait_healthy(self, *services: str, timeout: float = 90) -> None:
        for service in services:
            wait_for(f"{service} healthy", lambda s=service: self.health(s) == "healthy", timeout)

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, timeout=30)

    def containers(self) -> list[str]:
        """Every container of the project, running or not."""
        label = f"label=com.docker.compose.project={self.project}"
        return run([DOCKER, "ps", "--all", "--quiet", "--filter", label], self.env, 30).split()


@contextlib.contextmanager
def running_stack(env: dict[str, str], env_file: Path, project: str) -> Iterator[Stack]:
    """`up -d` with images already built; `down --volumes` at the end, whatever happened."""
    stack = Stack(project, env, env_file)
    try:
        stack.compose("up", "--detach", "--no-build", timeout=180)
        yield stack
    except BaseException:
        print(stack.compose("logs", "--no-color", "--tail=100", timeout=30))  # shown by pytest with the failure
        raise
    finally:
        stack.compose("down", "--volumes", "--timeout", "10", timeout=120)
