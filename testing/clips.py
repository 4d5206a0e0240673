"""Clips made for the tests of the upload limits, shared by ``backend/tests`` and ``e2e``."""

from __future__ import annotations

import fractions
from pathlib import Path

import av


def declared_clip(path: Path, width: int, height: int, fps: int = 25) -> Path:
    """A clip whose headers declare ``width`` x ``height`` raw frames, holding one 64-byte packet
    (a few hundred bytes: what an attacker sends to make every decoder allocate the frames)."""
    fmt = "avi" if path.suffix == ".avi" else "matroska"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        stream.codec_context.time_base = fractions.Fraction(1, fps)
        packet = av.Packet(b"\x00" * 64)
        packet.stream, packet.pts, packet.dts = stream, 0, 0
        packet.time_base = fractions.Fraction(1, fps)
        out.mux(packet)
    return path
