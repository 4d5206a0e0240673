"""A real RTSP server on loopback that serves an H.264 clip in a loop, for tests and the demo camera.

GStreamer's RTSP server from Debian (``gir1.2-gst-rtsp-server-1.0``, ``python3-gi``,
``gstreamer1.0-plugins-{base,good,bad}``; ``make rtsp-deps`` installs them), run by the system
Python (``/usr/bin/python3``: PyGObject is a Debian package, not in the project's venv)::

    /usr/bin/python3 stack/rtsp_server.py CLIP.mp4 [--port 0] [--path /cam] [--user U --password P]

The clip's H.264 access units are read once and fed to every client in a loop with increasing
timestamps (no re-encode; the clip must have no B-frames: ``stack.rtsp.transcode`` makes one from
any video). Prints ``READY rtsp://127.0.0.1:PORT/PATH`` once it serves
(port 0: a free port). With ``--user``/``--password`` clients must authenticate (HTTP basic);
``--audio-only`` serves a stream without a video track. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def read_access_units(clip: Path, gst) -> tuple[list[tuple[bytes, bool]], str, float]:  # noqa: ANN001
    """(access units as (bytes, keyframe), their caps string, fps) of the clip's H.264 track."""
    pipeline = gst.parse_launch(
        f'filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 '
        "! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(gst.State.PLAYING)
    units: list[tuple[bytes, bool]] = []
    caps = None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        caps = caps or sample.get_caps()
        ok, info = buf.map(gst.MapFlags.READ)
        if ok:
            units.append((bytes(info.data), not buf.has_flags(gst.BufferFlags.DELTA_UNIT)))
            buf.unmap(info)
    pipeline.set_state(gst.State.NULL)
    if not units or caps is None:
        raise SystemExit(f"rtsp_server: no H.264 video in {clip}")
    structure = caps.get_structure(0)
    ok, num, den = structure.get_fraction("framerate")
    fps = num / den if ok and den and num else 25.0
    return units, caps.to_string(), fps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--audio-only", action="store_true", help="a stream with no video track")
    args = parser.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)
    if args.audio_only:
        factory.set_launch("( audiotestsrc is-live=true ! audioconvert ! rtpL16pay name=pay0 pt=96 )")
    else:
        units, caps, fps = read_access_units(args.clip.resolve(), Gst)
        duration = int(Gst.SECOND / fps)
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=false ! clocksync "
            "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )

        def configure(_factory, media) -> None:  # noqa: ANN001 - one feed per media
            src = media.get_element().get_child_by_name("src")
            src.set_property("caps", Gst.Caps.from_string(caps))
            state = {"n": 0}

            def need_data(appsrc, _length) -> None:  # noqa: ANN001
                n = state["n"]
                data, key = units[n % len(units)]
                buf = Gst.Buffer.new_wrapped(data)
                buf.pts = buf.dts = n * duration
                buf.duration = duration
                if not key:
                    buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
                state["n"] = n + 1
                appsrc.emit("push-buffer", buf)

            src.connect("need-data", need_data)

        factory.connect("media-configure", configure)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{args.user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://{args.host}:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
