"""The run's counters in Prometheus's text format (`/metrics` of `fer-camera --serve`), and the process's memory."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys

# name: (type, help) of every metric /metrics can show; a value missing from a run (no MQTT, no live source) is left out
METRICS = {
    "frames_total": ("counter", "Frames processed."),
    "faces_total": ("counter", "Faces found, over all frames."),
    "fps": ("gauge", "Frames processed per second, over the last 2 s."),
    "source_fps": ("gauge", "Frames arriving from a live source per second, over the last 2 s."),
    "dropped_frames_total": ("counter", "A live source's frames skipped because the pipeline was busy."),
    "source_reconnects_total": ("counter", "Times a live source was reopened after it stopped delivering."),
    "stage_seconds_total": ("counter", "Time spent per stage: decode (waiting for and decoding frames), detect, "
                                       "classify (crop, preprocessing and model), smooth."),
    "mqtt_connected": ("gauge", "1 while the MQTT broker is connected."),
    "mqtt_sent_total": ("counter", "MQTT messages handed to the broker connection."),
    "mqtt_dropped_total": ("counter", "MQTT messages dropped (queue full while the broker was away)."),
    "mqtt_reconnects_total": ("counter", "Times the MQTT broker connection came back."),
    "mqtt_queued": ("gauge", "MQTT messages waiting for the broker."),
    "clients": ("gauge", "Clients of the MJPEG stream and the event stream."),
    "uptime_seconds": ("gauge", "Seconds since the server started."),
    "resident_memory_bytes": ("gauge", "Resident set size of the process."),
}
PREFIX = "fer_edge_"


def resident_memory_bytes() -> int:
    """The process's resident set size now (Linux: /proc/self/statm; elsewhere its peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class FreeMemoryReturner:
    """Hands the C heap's free memory back to the system every `every_s` seconds (glibc's malloc_trim; nothing
    elsewhere). Measured (benchmarks.serve_churn): without it a long `--serve` run's RSS drifts up and down by 30 MB
    with no client at all, as OpenCV's detector reallocates for each region size and the heap fragments; with it,
    RSS comes back to the same level after each such peak."""

    def __init__(self, every_s: float = 10.0):
        self.every_s, self._last = every_s, 0.0
        name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
        libc = ctypes.CDLL(name) if name else None
        self._trim = getattr(libc, "malloc_trim", None)

    def __call__(self, now: float) -> None:
        if self._trim is not None and now - self._last >= self.every_s:
            self._last = now
            self._trim(0)


def prometheus_text(values: dict) -> str:
    """`values` (name -> number, or for stage_seconds_total a {stage: seconds} dict) in the text exposition format."""
    lines = []
    for name, (kind, text) in METRICS.items():
        if name not in values:
            continue
        lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} {kind}"]
        value = values[name]
        if isinstance(value, dict):
            lines += [f'{PREFIX}{name}{{stage="{key}"}} {float(v):.6g}' for key, v in value.items()]
        else:
            lines.append(f"{PREFIX}{name} {float(value):.6g}" if isinstance(value, float) else f"{PREFIX}{name} {value}")
    return "\n".join(lines) + "\n"
