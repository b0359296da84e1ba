"""Where the outbox lives: unwritable is an error, ephemeral or network storage is warned about
(issue 11 point 12)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from endcall.reports import storage
from endcall.reports.outbox import SqliteOutbox


def mountinfo(tmp_path: Path, mounts: dict[str, str]) -> Path:
    lines = [
        f"{i + 20} 1 0:{i} / {point.replace(' ', chr(92) + '040')} rw,relatime - {kind} src rw"
        for i, (point, kind) in enumerate(mounts.items())
    ]
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_filesystem_type_picks_the_nearest_mount(tmp_path: Path) -> None:
    data = tmp_path / "data dir"
    data.mkdir()
    info = mountinfo(tmp_path, {"/": "overlay", str(data): "ext4", "/proc": "proc"})
    assert storage.filesystem_type(data / "endcall" / "o.sqlite3", info) == "ext4"
    assert storage.filesystem_type(tmp_path / "elsewhere.sqlite3", info) == "overlay"
    assert storage.filesystem_type(tmp_path, tmp_path / "missing") is None


def test_container_layer_and_network_filesystems_are_warned_about(tmp_path: Path) -> None:
    info = mountinfo(tmp_path, {"/": "overlay"})
    why = storage.storage_warning(tmp_path / "o.sqlite3", info)
    assert why is not None and "overlay" in why and "volume" in why and "PostgreSQL" in why
    info = mountinfo(tmp_path, {"/": "nfs4"})
    why = storage.storage_warning(tmp_path / "o.sqlite3", info)
    assert why is not None and "network filesystem" in why
    info = mountinfo(tmp_path, {"/": "ext4"})
    assert storage.storage_warning(tmp_path / "o.sqlite3", info) is None


def test_check_outbox_warns_once_per_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    info = mountinfo(tmp_path, {"/": "tmpfs"})
    ob = SqliteOutbox(tmp_path / "o.sqlite3")
    with caplog.at_level(logging.WARNING, logger="endcall.outbox"):
        storage.check_outbox(ob, info)
        storage.check_outbox(ob, info)
    warnings = [r for r in caplog.records if "does not survive the container" in r.getMessage()]
    assert len(warnings) == 1
    ob.close()


def test_an_unwritable_outbox_is_an_error_naming_it(tmp_path: Path) -> None:
    ob = SqliteOutbox(tmp_path / "o.sqlite3")
    ob._conn.execute("PRAGMA query_only = ON")  # a read-only file, even as root
    with pytest.raises(storage.OutboxError, match=r"cannot be written.*ENDCALL_OUTBOX"):
        storage.check_outbox(ob)
    ob.close()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(storage.OutboxError, match="cannot open the endcall outbox"):
        storage.open_checked(tmp_path / "a-file" / "o.sqlite3")


def test_a_dsn_password_is_never_in_the_error() -> None:
    with pytest.raises(storage.OutboxError) as info:
        storage.open_checked("postgresql://user:s3cret@127.0.0.1:1/db?connect_timeout=1")
    assert "s3cret" not in str(info.value)


def test_a_postgres_url_that_lost_its_slashes_is_refused_not_made_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Path("postgresql://u@h/db")`` is ``postgresql:/u@h/db``: opened as SQLite it would be
    a file in the working directory that no relay ever reads."""
    from endcall.reports.outbox import open_outbox

    monkeypatch.chdir(tmp_path)
    for mangled in (Path("postgresql://postgres@127.0.0.1:5432/db"), "postgres:/u@h/db"):
        with pytest.raises(ValueError, match="PostgreSQL URL"):
            open_outbox(mangled)
    assert list(tmp_path.iterdir()) == []
