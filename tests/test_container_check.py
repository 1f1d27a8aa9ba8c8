"""The start-up warning for a SQLite store on a container's own filesystem, from /proc/self/mountinfo text."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import pytest

from ghmcp.web import container_check
from ghmcp.web.container_check import ephemeral_store_warning, holding_mount

# A Docker container: overlay root, the usual /proc, /dev, /etc/hosts..., and a named volume on /data.
ROOT = "361 290 0:60 / / rw,relatime master:141 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w"
SYSTEM = """\
362 361 0:63 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
363 361 0:64 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
370 361 254:1 /var/lib/docker/containers/c/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
371 361 0:70 / /run rw,nosuid,nodev - tmpfs tmpfs rw
"""
VOLUME = "368 361 254:1 /var/lib/docker/volumes/mcp-data/_data /data rw,relatime master:1 - ext4 /dev/vda1 rw"
SPACED = r"369 361 254:1 /srv/my\040data /my\040data rw,relatime - ext4 /dev/vda1 rw"


def test_no_volume_on_the_data_directory_warns_in_one_line() -> None:
    warning = ephemeral_store_warning(PurePosixPath("/data/mcp.sqlite3"), ROOT + "\n" + SYSTEM)
    assert warning is not None and "\n" not in warning
    assert "/data/mcp.sqlite3" in warning and "container's own filesystem" in warning and "-v mcp-data:/data" in warning


def test_a_mounted_volume_holding_the_store_is_quiet() -> None:
    mounts = "\n".join([ROOT, SYSTEM, VOLUME])
    assert ephemeral_store_warning(PurePosixPath("/data/mcp.sqlite3"), mounts) is None
    assert ephemeral_store_warning(PurePosixPath("/data/deeper/mcp.sqlite3"), mounts) is None
    # Only the volume's own directory tree: a sibling whose name merely starts alike is on the root.
    assert ephemeral_store_warning(PurePosixPath("/database/mcp.sqlite3"), mounts) is not None


def test_a_tmpfs_is_no_better_than_the_root() -> None:
    warning = ephemeral_store_warning(PurePosixPath("/run/mcp.sqlite3"), ROOT + "\n" + SYSTEM)
    assert warning is not None and "a tmpfs at /run" in warning


def test_a_root_on_a_plain_disk_is_left_alone() -> None:
    disk_root = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard"
    assert ephemeral_store_warning(PurePosixPath("/data/mcp.sqlite3"), disk_root + "\n" + SYSTEM) is None


def test_escaped_mount_points_and_the_latest_mount_win() -> None:
    assert holding_mount(PurePosixPath("/my data"), "\n".join([ROOT, SPACED])) == ("/my data", "ext4")
    hidden = "\n".join([ROOT, VOLUME, "372 361 0:71 / /data rw - tmpfs tmpfs rw"])
    assert holding_mount(PurePosixPath("/data"), hidden) == ("/data", "tmpfs")


def test_outside_a_container_nothing_is_read(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(container_check, "CONTAINER_MARKERS", ())
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with caplog.at_level(logging.WARNING, logger="mcp_server"):
        container_check.warn_if_ephemeral("sqlite:////data/mcp.sqlite3")
    assert caplog.records == []


def test_in_a_container_the_running_mounts_decide(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with caplog.at_level(logging.WARNING, logger="mcp_server"):
        container_check.warn_if_ephemeral("redis://127.0.0.1:6379/0")  # no SQLite file: nothing to warn about
        container_check.warn_if_ephemeral(f"sqlite:///{tmp_path / 'mcp.sqlite3'}")
    expected = ephemeral_store_warning(tmp_path.resolve() / "mcp.sqlite3", Path("/proc/self/mountinfo").read_text())
    assert [r.getMessage() for r in caplog.records] == ([expected] if expected else [])
