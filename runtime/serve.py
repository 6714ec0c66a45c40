"""A live web view of the pipeline (`fer-camera --serve [HOST:]PORT`), standard library only.

    /             one self-contained page: the annotated stream, live probability bars per face, FPS, detector, model
    /stream.mjpg  multipart/x-mixed-replace JPEG stream of the annotated frames
    /events       Server-Sent Events: one `data:` line per frame, the same record as a --json line
    /snapshot.jpg the latest frame
    /health       JSON: frames processed, FPS, clients, uptime, source; a live source's dropped frames, reconnects
    /metrics      the same counters, per-stage time, MQTT's and the process's memory in Prometheus's text format

With `metrics_only` (a headless fleet) only /health and /metrics answer, and no frame is JPEG-encoded.

The pipeline only ever replaces the latest frame (`publish`); each client's thread sends the newest frame when it
can, so a slow client misses frames instead of queueing them, and a stalled one is dropped when its socket times
out. Nothing is read from disk by request; requests are GETs with bounded headers and no body.
"""
from __future__ import annotations

import hmac
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from .metrics import prometheus_text, resident_memory_bytes

SEND_TIMEOUT = 10.0  # seconds a client may stall before it is dropped
WAIT = 0.5  # seconds a client thread waits for a frame before it checks whether the server is closing
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Latest:
    """The newest published frame: a sequence number, its JPEG and its JSON record."""
    seq: int = 0
    jpeg: bytes = b""
    record: str = ""
    times: list[float] = field(default_factory=list)


class LiveView:
    """Serves the latest annotated frame and record over HTTP on `host:port` (port 0: any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None, jpeg_quality: int = 70,
                 max_width: int = 640, info: dict | None = None, metrics_only: bool = False):
        self.token, self.quality, self.max_width = token or None, jpeg_quality, max_width
        self.metrics_only = metrics_only
        self.info = dict(info or {})
        self.latest, self.clients, self.started = Latest(), 0, time.monotonic()
        self.status: dict = {}  # the pipeline's latest counters (a live source's dropped frames, reconnects)
        self.changed = threading.Condition()
        self.closing = threading.Event()
        server = type("Server", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        self.httpd = server((host, port), _handler(self))  # OSError when the port is taken
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> "LiveView":
        self.thread.start()
        return self

    def publish(self, annotated: np.ndarray | None, record: dict, status: dict | None = None) -> None:
        """The pipeline's newest frame (BGR, annotated; None with `metrics_only`), its record and counters for
        /health and /metrics (faces, stage_seconds, a live source's source_fps, dropped, reconnects, mqtt: {...});
        never blocks on clients."""
        ok, jpeg = False, None
        if annotated is not None and not self.metrics_only:
            if annotated.shape[1] > self.max_width:
                height = round(annotated.shape[0] * self.max_width / annotated.shape[1])
                annotated = cv2.resize(annotated, (self.max_width, height), interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        now = time.monotonic()
        with self.changed:
            times = [t for t in self.latest.times if now - t < 2.0] + [now]
            self.latest = Latest(self.latest.seq + 1, jpeg.tobytes() if ok else self.latest.jpeg,
                                 json.dumps(record), times)
            self.status = dict(status or {})
            self.changed.notify_all()

    def health(self) -> dict:
        with self.changed:
            latest = self.latest
        span = latest.times[-1] - latest.times[0] if len(latest.times) > 1 else 0.0
        return {"frames": latest.seq, "fps": round((len(latest.times) - 1) / span, 1) if span else 0.0,
                "clients": self.clients, "uptime_s": round(time.monotonic() - self.started, 1), **self.info,
                **self.status}

    def metrics(self) -> str:
        """/metrics: the health counters in Prometheus's text format, with the process's resident memory."""
        health = self.health()
        mqtt = health.get("mqtt", {})
        values = {"frames_total": health["frames"], "fps": float(health["fps"]), "clients": health["clients"],
                  "uptime_seconds": float(health["uptime_s"]), "resident_memory_bytes": resident_memory_bytes()}
        for key, name in (("faces", "faces_total"), ("source_fps", "source_fps"), ("dropped", "dropped_frames_total"),
                          ("reconnects", "source_reconnects_total"), ("stage_seconds", "stage_seconds_total")):
            if key in health:
                values[name] = health[key]
        for key, name in (("connected", "mqtt_connected"), ("sent", "mqtt_sent_total"),
                          ("dropped", "mqtt_dropped_total"), ("reconnects", "mqtt_reconnects_total"),
                          ("queued", "mqtt_queued")):
            if key in mqtt:
                values[name] = mqtt[key]
        return prometheus_text(values)

    def wait_newer(self, seq: int) -> Latest | None:
        """The latest frame once it is newer than `seq`; None when the view is closing."""
        with self.changed:
            while self.latest.seq <= seq:
                if self.closing.is_set():
                    return None
                self.changed.wait(WAIT)
            return self.latest

    def close(self) -> None:
        """Stop serving: client threads end within WAIT seconds."""
        self.closing.set()
        with self.changed:
            self.changed.notify_all()
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # a restarted fer-camera gets its port back at once (the old connections' TIME_WAIT does not block it); a port
    # that another process listens on is still refused (Linux and macOS: SO_REUSEADDR never shares a listening port)
    allow_reuse_address = True


def _handler(view: LiveView):
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = SEND_TIMEOUT  # also bounds reading the request line and headers
        protocol_version = "HTTP/1.0"
        server_version = "fer-edge"

        def log_message(self, *args):  # no access log on the terminal
            pass

        def _authorised(self, query: dict) -> bool:
            if not view.token:
                return True
            given = query.get("token", [""])[0]
            header = self.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                given = header[len("Bearer "):]
            return hmac.compare_digest(given.encode(), view.token.encode())

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if not self._authorised(query):
                return self._send(401, b"a token is needed: ?token=... or Authorization: Bearer ...\n", "text/plain")
            routes = {"/health": self._health, "/metrics": self._metrics}
            if not view.metrics_only:
                routes.update({"/": self._page, "/stream.mjpg": self._mjpeg, "/events": self._events,
                               "/snapshot.jpg": self._snapshot})
            route = routes.get(url.path)
            if route is None:
                return self._send(404, b"not found\n", "text/plain")
            try:
                route(query)
            except (OSError, ValueError):  # the client went away or stalled past SEND_TIMEOUT
                pass

        def do_POST(self):
            self._send(405, b"only GET\n", "text/plain")

        do_PUT = do_DELETE = do_PATCH = do_POST

        def _page(self, query):
            token = query.get("token", [""])[0]
            self._send(200, PAGE.replace("__TOKEN__", json.dumps(token)).encode(), "text/html; charset=utf-8")

        def _health(self, query):
            self._send(200, json.dumps(view.health()).encode(), "application/json")

        def _metrics(self, query):
            self._send(200, view.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")

        def _snapshot(self, query):
            latest = view.latest
            if not latest.jpeg:
                return self._send(503, b"no frame yet\n", "text/plain")
            self._send(200, latest.jpeg, "image/jpeg")

        def _streaming(self, kind: str, send) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with view.changed:
                view.clients += 1
            try:
                seq = 0
                while (latest := view.wait_newer(seq)) is not None:
                    seq = latest.seq
                    send(latest)
                    self.wfile.flush()
            finally:
                with view.changed:
                    view.clients -= 1

        def _mjpeg(self, query):
            def send(latest: Latest) -> None:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(latest.jpeg)).encode() + b"\r\n\r\n" + latest.jpeg + b"\r\n")
            self._streaming("multipart/x-mixed-replace; boundary=frame", send)

        def _events(self, query):
            self._streaming("text/event-stream", lambda latest: self.wfile.write(f"data: {latest.record}\n\n".encode()))

    return Handler


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fer-edge live view</title>
<style>
 body { margin: 0; font: 15px system-ui, sans-serif; background: #15171a; color: #e8e8e8; }
 header { padding: 10px 16px; background: #22262b; display: flex; gap: 24px; flex-wrap: wrap; }
 header b { color: #8fd18f; }
 main { display: flex; flex-wrap: wrap; gap: 16px; padding: 16px; }
 #video { max-width: 100%; min-width: 320px; min-height: 180px; background: #000; border-radius: 6px; }
 #faces { flex: 1; min-width: 280px; }
 .face { background: #22262b; border-radius: 6px; padding: 10px 12px; margin-bottom: 12px; }
 .face h3 { margin: 0 0 8px; font-size: 15px; }
 .row { display: grid; grid-template-columns: 90px 1fr 44px; align-items: center; gap: 8px; margin: 3px 0; }
 .bar { height: 12px; background: #33383e; border-radius: 6px; overflow: hidden; }
 .bar i { display: block; height: 100%; background: #5aa9e6; }
 .top .bar i { background: #8fd18f; }
 .none { color: #9aa0a6; }
 .unreliable { opacity: 0.45; }
 .quality { color: #9aa0a6; font-size: 12px; font-weight: normal; }
</style></head>
<body>
<header><span>fer-edge live view</span><span>source <b id="source">-</b></span><span>FPS <b id="fps">-</b></span><span>frames <b id="frames">-</b></span>
<span>detector <b id="detector">-</b></span><span>model <b id="model">-</b></span></header>
<main><img id="video" alt="annotated stream"><div id="faces"><p class="none">waiting for frames...</p></div></main>
<script>
const token = __TOKEN__;
const q = token ? "?token=" + encodeURIComponent(token) : "";
document.getElementById("video").src = "stream.mjpg" + q;
const faces = document.getElementById("faces");
function row(label, p, top) {
  return '<div class="row' + (top ? ' top' : '') + '"><span>' + label + '</span><div class="bar"><i style="width:'
    + (100 * p).toFixed(1) + '%"></i></div><span>' + p.toFixed(2) + '</span></div>';
}
function draw(record) {
  if (!record.faces.length) { faces.innerHTML = '<p class="none">no face in view</p>'; return; }
  faces.innerHTML = record.faces.map(function (f, i) {
    const id = f.track_id === undefined ? i : f.track_id;
    const quality = f.quality === undefined ? '' : ' <span class="quality">quality ' + f.quality.toFixed(2)
      + (f.reliable ? '' : ', unreliable') + (f.yaw === undefined ? '' : ', yaw ' + Math.round(f.yaw)) + '</span>';
    return '<div class="face' + (f.reliable === false ? ' unreliable' : '') + '"><h3>face ' + id + ': ' + f.label
      + ' ' + f.probability.toFixed(2) + quality + '</h3>'
      + Object.keys(f.scores).map(function (k) { return row(k, f.scores[k], k === f.label); }).join("") + '</div>';
  }).join("");
}
new EventSource("events" + q).onmessage = function (e) { draw(JSON.parse(e.data)); };
function health() {
  fetch("health" + q).then(function (r) { return r.json(); }).then(function (h) {
    document.getElementById("fps").textContent = h.fps;
    document.getElementById("frames").textContent = h.frames;
    document.getElementById("source").textContent = h.source || "-";
    document.getElementById("detector").textContent = h.detector || "-";
    document.getElementById("model").textContent = h.model || "-";
  }).catch(function () {});
}
health(); setInterval(health, 1000);
</script></body></html>
"""
