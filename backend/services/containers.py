"""Cheap completeness checks of video containers: catches a truncated upload without decoding it.

ISO BMFF (mp4, mov, m4v): the top-level boxes must tile the file exactly. RIFF (avi): every
RIFF chunk's declared size must fit in the file. Other formats pass (OpenCV's probe still runs).
"""

from __future__ import annotations

import struct
from pathlib import Path

BMFF_TYPES = {
    b"ftyp",
    b"moov",
    b"mdat",
    b"free",
    b"skip",
    b"wide",
    b"uuid",
    b"meta",
    b"moof",
    b"mfra",
    b"pdin",
}


class TruncatedVideo(ValueError):
    pass


def check_complete(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if head[4:8] in BMFF_TYPES:
            _check_bmff(f, size)
        elif head[:4] == b"RIFF":
            _check_riff(f, size)


def _check_bmff(f, size: int) -> None:
    offset = 0
    while offset < size:
        f.seek(offset)
        header = f.read(8)
        if len(header) < 8:
            raise TruncatedVideo(f"incomplete box header at byte {offset}")
        box_size, box_type = struct.unpack(">I4s", header)
        if box_size == 1:
            large = f.read(8)
            if len(large) < 8:
                raise TruncatedVideo(f"incomplete box header at byte {offset}")
            box_size = struct.unpack(">Q", large)[0]
        elif box_size == 0:  # runs to the end of the file
            return
        if box_size < 8:
            raise TruncatedVideo(f"corrupt box {box_type!r} at byte {offset}")
        if offset + box_size > size:
            raise TruncatedVideo(
                f"box {box_type.decode('latin-1')!r} at byte {offset} needs {box_size} bytes, "
                f"the file ends after {size - offset}"
            )
        offset += box_size


def _check_riff(f, size: int) -> None:
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        tag, chunk = struct.unpack("<4sI", f.read(8))
        if tag != b"RIFF":
            return  # trailing junk after the last RIFF chunk: tolerated, as players do
        end = offset + 8 + chunk + (chunk & 1)
        if offset + 8 + chunk > size:
            raise TruncatedVideo(f"RIFF chunk at byte {offset} needs {chunk} bytes, the file ends sooner")
        offset = end
