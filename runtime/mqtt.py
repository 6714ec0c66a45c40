"""Results to an MQTT broker (`fer-camera --mqtt mqtt://[user[:password]@]host[:port][/prefix]`), with paho-mqtt
(the `mqtt` extra: `pip install 'fer-edge[mqtt]'`).

Topics under the prefix (default `fer-edge/<hostname>`), QoS 1:

    status                  "online" (retained) once connected; "offline" at a clean exit and as the broker's Last Will
    faces                   the --json record of a frame with faces, at most `rate` messages a second
    expression              an event when a followed face appears, leaves, or its label changes and holds for `hold_s`
    expression/summary      (retained) the faces present now: their number, the dominant expression, each face's label

With `discovery`, Home Assistant's MQTT discovery topics (`homeassistant/sensor/...`, retained) announce two sensors,
the number of faces and the dominant expression, read from `expression/summary`.

Publishing never blocks the pipeline: `publish_frame` only appends to a bounded queue (the oldest message is dropped
when it is full, and counted) that a background thread sends while the broker is connected; paho reconnects with
backoff (1 s doubling to 30 s). A broker that is not connected shortly after the start is one warning line saying why
(`why_unreachable`); the run goes on and connects when it can.
"""
from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote, urlsplit

from .sources import mask_credentials

EXTRA = "pip install 'fer-edge[mqtt]' (or, in a checkout: pip install -e '.[mqtt]')"
PASSWORD_ENV = "FER_EDGE_MQTT_PASSWORD"
QUEUE = 1000  # messages waiting for the broker at most; the oldest goes first
QOS = 1
CONNECT_WAIT_S = 2.0  # how long the start waits for the broker before it says why it is not connected and goes on


class MqttError(ValueError):
    """A bad --mqtt URL or option, or paho-mqtt missing: one line."""


@dataclass(frozen=True)
class BrokerUrl:
    """`mqtt://[user[:password]@]host[:port][/prefix]` or `mqtts://...` taken apart."""
    host: str
    port: int
    tls: bool
    prefix: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    text: str = field(default="", repr=False)

    @property
    def display(self) -> str:
        return mask_credentials(self.text)


def parse_broker_url(text: str, hostname: str | None = None) -> BrokerUrl:
    """The broker's address, credentials (the password also from $FER_EDGE_MQTT_PASSWORD) and topic prefix."""
    url = urlsplit(text)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise MqttError(f"--mqtt expects mqtt://[user[:password]@]host[:port][/prefix] (or mqtts://), "
                        f"got {mask_credentials(text)}")
    try:
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
    except ValueError:
        raise MqttError(f"--mqtt: bad port in {mask_credentials(text)}") from None
    prefix = url.path.strip("/") or f"fer-edge/{_topic_safe(hostname or socket.gethostname())}"
    if re.search(r"[#+]", prefix) or "#" in text:  # urlsplit would take a # for a fragment
        raise MqttError(f"--mqtt: the topic prefix may not hold MQTT wildcards (# or +; a # in a password is "
                        f"written %23), got {mask_credentials(text)}")
    password = unquote(url.password) if url.password is not None else os.environ.get(PASSWORD_ENV)
    return BrokerUrl(url.hostname, port, url.scheme == "mqtts", prefix, unquote(url.username) if url.username else None,
                     password, text)


def check_options(url: str, ca_file: str | None = None) -> BrokerUrl:
    """Everything --mqtt needs, checked before the run starts: the URL, paho-mqtt, the CA file. MqttError if not."""
    broker = parse_broker_url(url)
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        raise MqttError(f"--mqtt needs paho-mqtt, part of the mqtt extra: {EXTRA}") from None
    if ca_file and not broker.tls:
        raise MqttError("--mqtt-ca is for an mqtts:// broker")
    if ca_file and not os.path.isfile(ca_file):
        raise MqttError(f"--mqtt-ca: no such file: {ca_file}")
    return broker


def why_unreachable(broker: BrokerUrl, ca_file: str | None = None, timeout: float = 1.0) -> str:
    """Why a broker did not accept an MQTT connection, in words for the warning line, found by opening a connection
    (and, for mqtts://, a TLS handshake with the same trust as the client's) to it."""
    where = f"{broker.host}:{broker.port}"
    try:
        sock = socket.create_connection((broker.host, broker.port), timeout=timeout)
    except socket.gaierror:
        return f"unknown host {broker.host}"
    except ConnectionRefusedError:
        return f"nothing listens on {where} (connection refused)"
    except TimeoutError:
        return f"no answer from {where} within {timeout:g} s"
    except OSError as error:
        return f"{where}: {error.strerror or error}"
    with sock:
        if not broker.tls:
            return f"{where} accepts connections but does not answer as an MQTT broker"
        try:
            with ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=broker.host):
                pass
        except ssl.SSLCertVerificationError as error:
            hint = "is --mqtt-ca the CA that signed it?" if ca_file else "give the CA that signed it with --mqtt-ca FILE"
            return f"its TLS certificate is not trusted ({error.verify_message}); {hint}"
        except TimeoutError:
            return f"{where} accepts connections but does not start TLS within {timeout:g} s; is it an mqtts:// port?"
        except OSError as error:  # ssl.SSLError included: a reset or a plain MQTT port
            return f"the TLS handshake with {where} failed ({getattr(error, 'reason', None) or error.strerror or error})" \
                   "; is it an mqtts:// port?"
    return f"{where} speaks TLS but does not answer as an MQTT broker"


def _topic_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name) or "device"


@dataclass
class _Face:
    """What the expression events know of a followed face."""
    label: str
    since: float  # when `label` became the face's label
    last_seen: float
    candidate: str | None = None  # a different label, not yet held for long enough
    candidate_since: float = 0.0
    probability: float = 0.0


class ExpressionEvents:
    """Turns per-frame results into events: a face appears, leaves (unseen for `leave_s`), or changes label (the new
    label held for `hold_s`, so that a flickering label does not flap). Times are the frames' timestamps.
    reliable_only: a face flagged unreliable (`runtime.quality`) counts as still present but neither appears nor
    changes label (`fer-camera --min-quality`)."""

    def __init__(self, hold_s: float = 0.5, leave_s: float = 1.0, reliable_only: bool = False):
        self.hold_s, self.leave_s, self.reliable_only = hold_s, leave_s, reliable_only
        self.faces: dict[int, _Face] = {}

    def __call__(self, record: dict) -> list[dict]:
        now = float(record.get("timestamp") or 0.0)
        events = []
        for face in record["faces"]:
            track, label = face.get("track_id"), face["label"]
            if track is None:
                continue
            known = self.faces.get(track)
            if self.reliable_only and face.get("reliable") is False:
                if known is not None:
                    known.last_seen = now
                continue
            if known is None:
                self.faces[track] = _Face(label, now, now, probability=face["probability"])
                events.append(self._event("appeared", track, label, None, face["probability"], now))
                continue
            known.last_seen, known.probability = now, face["probability"]
            if label == known.label:
                known.candidate = None
            elif label != known.candidate:
                known.candidate, known.candidate_since = label, now
            elif now - known.candidate_since >= self.hold_s:
                events.append(self._event("changed", track, label, known.label, face["probability"], now))
                known.label, known.since, known.candidate = label, now, None
        for track, known in list(self.faces.items()):
            if now - known.last_seen > self.leave_s:
                del self.faces[track]
                events.append(self._event("left", track, known.label, None, None, now))
        return events

    @staticmethod
    def _event(kind: str, track: int, label: str, previous: str | None, probability: float | None, now: float) -> dict:
        event = {"event": kind, "track_id": track, "label": label, "time": round(now, 3)}
        if previous is not None:
            event["previous"] = previous
        if probability is not None:
            event["probability"] = round(float(probability), 4)
        return event

    def summary(self) -> dict:
        """The faces present now: their number, the most common label (ties: the most confident), each face."""
        counts: dict[str, int] = {}
        for face in self.faces.values():
            counts[face.label] = counts.get(face.label, 0) + 1
        dominant = max(counts, key=lambda k: (counts[k], max(f.probability for f in self.faces.values()
                                                             if f.label == k))) if counts else "none"
        return {"faces": len(self.faces), "dominant": dominant,
                "present": [{"track_id": t, "label": f.label, "since": round(f.since, 3)}
                            for t, f in sorted(self.faces.items())]}


class MqttPublisher:
    """Publishes a run's results to a broker; `publish_frame(record)` per frame (never blocks), `close()` at the end.
    `notify` receives the warning lines (broker unreachable, connection lost, reconnected); `reliable_only` leaves
    faces flagged unreliable out of the expression events (`ExpressionEvents`); the faces messages keep them."""

    def __init__(self, broker: BrokerUrl, rate: float = 5.0, discovery: bool = False,
                 ca_file: str | None = None, notify: Callable[[str], None] | None = None, queue_size: int = QUEUE,
                 reliable_only: bool = False):
        self.ca_file = ca_file
        try:
            import paho.mqtt.client as paho
        except ImportError:
            raise MqttError(f"--mqtt needs paho-mqtt, part of the mqtt extra: {EXTRA}") from None
        self.broker, self.rate, self.discovery = broker, rate, discovery
        self.notify = notify or (lambda message: None)
        self.events = ExpressionEvents(reliable_only=reliable_only)
        self.queue: deque[tuple[str, str, bool]] = deque()
        self.queue_size = queue_size
        self.dropped = self.sent = self.reconnects = self._connects = 0
        self.connected = threading.Event()
        self._wake, self._closing = threading.Condition(), threading.Event()
        self._last_faces = 0.0
        self._refused = False  # the broker answered, and said no
        client_id = f"fer-edge-{_topic_safe(socket.gethostname())}-{os.getpid()}"
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.will_set(self.topic("status"), "offline", qos=QOS, retain=True)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=ca_file)
        self.client.reconnect_delay_set(1, 30)
        self.client.max_queued_messages_set(queue_size)
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="fer-edge mqtt", daemon=True)
        self._sender.start()

    def wait_connected(self, timeout: float = CONNECT_WAIT_S) -> bool:
        """Wait up to `timeout` s for the broker; when it is not connected by then, one warning line saying why (the
        run goes on)."""
        if self.connected.wait(timeout):
            return True
        if not self._refused:
            why = why_unreachable(self.broker, self.ca_file)
            if not self.connected.is_set():
                self.notify(f"MQTT broker {self.broker.display} not connected: {why}; the run goes on and publishes "
                            "once it connects")
        return self.connected.is_set()

    def topic(self, name: str) -> str:
        return f"{self.broker.prefix}/{name}"

    # paho's network thread
    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self._refused = True
            self.notify(f"MQTT broker {self.broker.display} refused the connection: {reason} (the run goes on)")
            if str(reason).lower().startswith(("bad user", "not authorized", "bad username")):
                client.disconnect()  # wrong credentials: retrying cannot help
            return
        self._connects += 1
        if self._connects > 1:
            self.reconnects += 1
            self.notify(f"reconnected to MQTT broker {self.broker.display}")
        client.publish(self.topic("status"), "online", qos=QOS, retain=True)
        if self.discovery:
            for topic, payload in self._discovery_messages():
                client.publish(topic, payload, qos=QOS, retain=True)
        client.publish(self.topic("expression/summary"), json.dumps(self.events.summary()), qos=QOS, retain=True)
        self.connected.set()
        with self._wake:
            self._wake.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason, properties=None) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._closing.is_set():
            self.notify(f"lost the MQTT broker {self.broker.display} ({reason}); reconnecting, results are queued "
                        f"(at most {self.queue_size}, the oldest dropped first)")

    def _send_loop(self) -> None:
        while not self._closing.is_set():
            with self._wake:
                while not self._closing.is_set() and (not self.queue or not self.connected.is_set()):
                    self._wake.wait(0.5)
                if not self.queue or not self.connected.is_set():
                    continue
                topic, payload, retain = self.queue.popleft()
            info = self.client.publish(topic, payload, qos=QOS, retain=retain)
            if info.rc == 0:
                self.sent += 1
            else:  # paho's own queue is full or the connection just dropped
                self.dropped += 1

    def _enqueue(self, topic: str, payload: str, retain: bool = False) -> None:
        with self._wake:
            if len(self.queue) >= self.queue_size:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append((self.topic(topic), payload, retain))
            self._wake.notify()

    def publish_frame(self, record: dict) -> None:
        """The frame's messages: its record (rate-limited, frames with faces only) and the expression events."""
        now = time.monotonic()
        if record["faces"] and (not self.rate or now - self._last_faces >= 1.0 / self.rate):
            self._last_faces = now
            self._enqueue("faces", json.dumps(record))
        events = self.events(record)
        for event in events:
            self._enqueue("expression", json.dumps(event))
        if events:
            self._enqueue("expression/summary", json.dumps(self.events.summary()), retain=True)

    def _discovery_messages(self) -> list[tuple[str, str]]:
        node = _topic_safe(self.broker.prefix.replace("/", "_"))
        device = {"identifiers": [node], "name": f"fer-edge {self.broker.prefix.split('/')[-1]}",
                  "manufacturer": "fer-edge", "model": "facial-expression recognizer"}
        common = {"state_topic": self.topic("expression/summary"), "availability_topic": self.topic("status"),
                  "payload_available": "online", "payload_not_available": "offline", "device": device}
        sensors = {"faces": {"name": "Faces", "value_template": "{{ value_json.faces }}", "icon": "mdi:account-group",
                             "state_class": "measurement", "unit_of_measurement": "faces"},
                   "expression": {"name": "Dominant expression", "value_template": "{{ value_json.dominant }}",
                                  "icon": "mdi:emoticon-outline"}}
        return [(f"homeassistant/sensor/{node}/{key}/config",
                 json.dumps({**common, **config, "unique_id": f"{node}_{key}", "object_id": f"{node}_{key}"}))
                for key, config in sensors.items()]

    def stats(self) -> dict:
        """For /health and /metrics: connected (1 or 0), messages sent, dropped and queued, reconnects."""
        return {"connected": int(self.connected.is_set()), "sent": self.sent, "dropped": self.dropped,
                "reconnects": self.reconnects, "queued": len(self.queue)}

    def close(self, timeout: float = 3.0) -> None:
        """Send what is queued (for up to `timeout` s while connected), publish "offline" and disconnect."""
        deadline = time.monotonic() + timeout
        while self.queue and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing.set()
        with self._wake:
            self._wake.notify_all()
        self._sender.join(timeout=2)
        if self.connected.is_set():
            info = self.client.publish(self.topic("status"), "offline", qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
