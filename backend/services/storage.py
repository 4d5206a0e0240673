"""Files in ``VIDEO_STORAGE_PATH``: the uploaded videos and the violations' snapshots. Nothing
outside that directory is ever removed or served."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("backend.storage")


def snapshot_dir(storage: Path, video_id: int) -> Path:
    """Where the pipeline's clean-up writes a video's violation snapshots
    (``<VIDEO_STORAGE_PATH>/snapshots/<video_id>/<track_id>.jpg``)."""
    return storage / "snapshots" / str(video_id)


def remove_snapshots(video_id: int, paths: list[str], storage: Path) -> None:
    """Remove the snapshot files the video's violations named (those inside the storage
    directory) and the video's snapshot directory."""
    for path in paths:
        remove_stored_file(path, storage)
    directory = snapshot_dir(storage, video_id)
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        log.warning("could not remove %s", directory)


def remove_stored_file(file_path: str, storage: Path) -> bool:
    """Remove a file that lives in the storage directory (never a file elsewhere)."""
    path = Path(file_path).resolve()
    if not path.is_relative_to(storage.resolve()):
        log.warning("not removing %s: outside %s", path, storage)
        return False
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # the row is gone already: report, do not fail the request
        log.warning("could not remove %s: %s", path, exc)
        return False
    return True


def read_snapshot(file_path: str, storage: Path) -> bytes | None:
    """The snapshot's bytes; None when missing or outside the storage directory."""
    path = Path(file_path).resolve()
    if not path.is_relative_to(storage.resolve()):
        log.warning("not serving %s: outside %s", path, storage)
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        log.warning("snapshot %s unreadable: %s", path, exc)
        return None
