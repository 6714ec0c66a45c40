"""A real RTSP server on 127.0.0.1 for the tests: GStreamer's gst-rtsp-server serving an H.264 MP4 file at
rtsp://127.0.0.1:PORT/clip over TCP only (a client that asks for UDP is refused), played in real time.

    /usr/bin/python3 tests/servers/rtsp_server.py PORT FILE.mp4

Run with Debian's own python3, which has python3-gi (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good and -bad
give the RTSP server, qtdemux, h264parse and rtph264pay). Prints "ready" once it listens; runs until killed."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> None:
    port, path = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 '
                       'config-interval=1 )')
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
