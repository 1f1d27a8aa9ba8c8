"""The start-up warning for a SQLite store that the next deploy will throw away.

A container's own filesystem lives as long as the container: a SQLite file there (the image's
default `/data`, when nobody mounted a volume on it) loses every client, token and sign-in when the
container is replaced. The server warns in one line rather than refusing to start: the detection is a
heuristic (a marker file, then /proc/self/mountinfo), and a quick `docker run` to try the image is
legitimate. How it decides:

- in a container: `/.dockerenv` (Docker), `/run/.containerenv` (Podman) or `KUBERNETES_SERVICE_HOST`
  (every Kubernetes pod) exists;
- the database's directory sits on the container's layered root filesystem (overlay, as Docker,
  Podman and containerd make it), or on a tmpfs, according to the mount that holds it in
  /proc/self/mountinfo (the longest mount point above it). A mounted volume (named or bind, a
  PersistentVolume) is a mount of its own. A root on a plain disk (ext4 on a block device, as some
  virtual machines built from images have, `/.dockerenv` and all) is left alone: it may well persist.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePath

from ghmcp.storage.sqlite import sqlite_path

logger = logging.getLogger("mcp_server")

CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")
EPHEMERAL_FILESYSTEMS = {"tmpfs", "ramfs"}  # in memory: gone with the container, wherever mounted
LAYERED_FILESYSTEMS = {"overlay", "aufs", "fuse.fuse-overlayfs"}  # a container's own root: gone with it


def warn_if_ephemeral(storage_url: str) -> None:
    """Log the warning (one line) when the SQLite store of `storage_url` would not outlive its container."""
    path = sqlite_path(storage_url)
    if path is None or not in_container():
        return
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return  # not Linux, or /proc hidden: nothing to say rather than a guess
    warning = ephemeral_store_warning(path.resolve(), mountinfo)
    if warning:
        logger.warning("%s", warning)


def in_container() -> bool:
    return any(Path(marker).exists() for marker in CONTAINER_MARKERS) or "KUBERNETES_SERVICE_HOST" in os.environ


def ephemeral_store_warning(database: PurePath, mountinfo: str) -> str | None:
    """The warning for a SQLite file at `database` (absolute) inside a container with these mounts, or None
    when its directory is on a mounted volume."""
    mount_point, filesystem = holding_mount(database.parent, mountinfo)
    layered_root = mount_point == "/" and filesystem in LAYERED_FILESYSTEMS
    if not layered_root and filesystem not in EPHEMERAL_FILESYSTEMS:
        return None
    where = "the container's own filesystem" if mount_point == "/" else f"a {filesystem} at {mount_point}"
    return (
        f"The SQLite store {database} is on {where}, not on a mounted volume: every sign-in is lost when the "
        f"container is replaced. Mount a volume on {database.parent} (docker run -v mcp-data:{database.parent}) "
        "or use Redis (MCP_STORAGE_URL); see docs/deploy.md."
    )


def holding_mount(directory: PurePath, mountinfo: str) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount that holds `directory`: the longest mount point above it.
    The last line wins for one mount point, as a later mount hides an earlier one there."""
    best = ("/", "")
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        mount_point = _unescape(fields[4])
        filesystem = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        if directory.is_relative_to(mount_point) and len(mount_point) >= len(best[0]):
            best = (mount_point, filesystem)
    return best


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
