"""Where the outbox lives: refuse one that cannot be written, warn about one that will not last.

An outbox that cannot be written is an error when the agent starts (`OutboxError`, saying which
outbox and why), not drafts silently skipped later. A SQLite outbox on storage that dies with
the container (the overlay root filesystem, tmpfs) or on a network filesystem (where SQLite's
locking is unsafe) is warned about once per path, with what to do instead: a mounted volume for
one host, PostgreSQL for several. The filesystem type comes from ``/proc/self/mountinfo``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from endcall.reports.outbox import Outbox, open_outbox
from endcall.reports.outbox.base import default_outbox_path

__all__ = ["OutboxError", "check_outbox", "filesystem_type", "open_checked", "storage_warning"]

logger = logging.getLogger("endcall.outbox")

#: filesystems whose files are gone when the container (or the machine) goes
EPHEMERAL_FS = frozenset({"overlay", "overlayfs", "aufs", "tmpfs", "ramfs"})
#: network filesystems: SQLite's file locks are not reliable there
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "lustre",
        "gpfs",
    }
)
MOUNTINFO = "/proc/self/mountinfo"

_warned: set[str] = set()


class OutboxError(RuntimeError):
    """The outbox cannot be opened or written; the message names it and says what to do."""


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def filesystem_type(path: str | Path, mountinfo: str | Path = MOUNTINFO) -> str | None:
    """The type of the filesystem holding ``path`` (its nearest existing ancestor), or None
    when ``mountinfo`` cannot be read."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    target = str(p.resolve())
    try:
        lines = Path(mountinfo).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    best, kind = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = _unescape(fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


def storage_warning(path: str | Path, mountinfo: str | Path = MOUNTINFO) -> str | None:
    """Why a SQLite outbox at ``path`` may lose reports, or None when it looks durable."""
    kind = filesystem_type(path, mountinfo)
    if kind in EPHEMERAL_FS:
        return (
            f"the outbox {path} is on {kind}, which does not survive the container: reports"
            " not yet delivered are lost with it. Mount a volume and point ENDCALL_OUTBOX at"
            " it, or use a PostgreSQL outbox (ENDCALL_OUTBOX=postgresql://...)"
        )
    if kind in NETWORK_FS:
        return (
            f"the outbox {path} is on a network filesystem ({kind}): SQLite is not safe to"
            " share there. Keep the SQLite outbox on a local volume of one host, or use a"
            " PostgreSQL outbox for several hosts"
        )
    return None


def check_outbox(outbox: Outbox, mountinfo: str | Path = MOUNTINFO) -> None:
    """Raise `OutboxError` unless ``outbox`` can be written (a row written and removed in one
    transaction); log the `storage_warning` of a SQLite outbox once per path."""
    probe = getattr(outbox, "probe", None)
    if callable(probe):
        try:
            probe()
        except Exception as e:
            raise OutboxError(
                f"the endcall outbox {outbox!r} cannot be written ({type(e).__name__}: {e});"
                " without it a report lost in flight cannot be retried. Point ENDCALL_OUTBOX"
                " (or EndCall(outbox=...)) at a writable volume or a PostgreSQL database"
            ) from e
    path = getattr(outbox, "path", None)
    if isinstance(path, Path) and str(path) != ":memory:" and str(path) not in _warned:
        why = storage_warning(path, mountinfo)
        if why is not None:
            _warned.add(str(path))
            logger.warning("endcall: %s", why)


def open_checked(target: str | Path | None = None) -> Outbox:
    """`open_outbox` + `check_outbox`; every failure is an `OutboxError` naming the outbox."""
    where = str(target if target is not None else default_outbox_path())
    shown = where.split("@")[-1] if "://" in where else where  # never log a DSN's password
    try:
        outbox = open_outbox(target)
    except Exception as e:
        raise OutboxError(
            f"cannot open the endcall outbox {shown} ({type(e).__name__}: {e}). Point"
            " ENDCALL_OUTBOX (or EndCall(outbox=...)) at a writable volume or a PostgreSQL"
            " database"
        ) from e
    try:
        check_outbox(outbox)
    except BaseException:
        outbox.close()
        raise
    return outbox
