"""`fer-camera --mqtt` against a real broker (Debian's mosquitto, started on a free loopback port), and `/metrics`
read by Prometheus's own text parser (prometheus_client)."""
from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.mqtt_overhead import silent_broker
from runtime.mqtt import ExpressionEvents, MqttError, parse_broker_url

from .conftest import ROOT
from .test_sources import free_port, http_get, records, wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """mosquitto on 127.0.0.1:`port`, anonymous or with one user (a password file made by mosquitto_passwd)."""

    def __init__(self, tmp: Path, port: int | None = None, user: tuple[str, str] | None = None):
        self.port, self.tmp = port or free_port(), tmp
        # as root, mosquitto would drop to its own user, which cannot read the test's files: it stays this user
        config = [f"listener {self.port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
        if user:
            passwords = tmp / "passwords"
            subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), *user], check=True, capture_output=True)
            passwords.chmod(0o600)
            config += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            config.append("allow_anonymous true")
        self.config = tmp / f"mosquitto-{self.port}.conf"
        self.config.write_text("\n".join(config) + "\n")
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        wait_until(lambda: _listening(self.port) or self.proc.poll() is not None, 20, "mosquitto")
        assert self.proc.poll() is None, self.proc.stderr.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Subscriber:
    """A paho client subscribed to `topics`, collecting (topic, payload, retained) in order."""

    def __init__(self, port: int, topics=("#",), auth: tuple[str, str] | None = None):
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, str, bool]] = []
        self.lock, self.ready = threading.Lock(), threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if auth:
            self.client.username_pw_set(*auth)

        def on_connect(client, userdata, flags, reason, properties):
            for topic in topics:
                client.subscribe(topic, qos=1)
            self.ready.set()

        def on_message(client, userdata, message):
            with self.lock:
                self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.3)  # the subscriptions are in place

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def paho_available():
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the test extra: pip install '.[test]')")


@pytest.fixture(scope="module")
def mosquitto_available(paho_available):
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients; .ci/run does it)")


def camera(*args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime.camera", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def test_broker_urls_and_their_one_line_errors(monkeypatch):
    broker = parse_broker_url("mqtt://bob:s%40cret@broker.local:1884/home/hall", hostname="pi")
    assert (broker.host, broker.port, broker.tls, broker.prefix, broker.username, broker.password) == \
        ("broker.local", 1884, False, "home/hall", "bob", "s@cret")
    assert broker.display == "mqtt://bob:***@broker.local:1884/home/hall" and "s%40cret" not in repr(broker)
    monkeypatch.setenv("FER_EDGE_MQTT_PASSWORD", "from-env")
    broker = parse_broker_url("mqtts://bob@broker.local", hostname="kitchen pi")
    assert (broker.port, broker.tls, broker.prefix, broker.password) == (8883, True, "fer-edge/kitchen_pi", "from-env")
    for bad, message in [("http://broker", "--mqtt expects mqtt://"), ("mqtt://broker/a/#", "wildcards"),
                         ("mqtt://broker:99999", "bad port")]:
        with pytest.raises(MqttError, match=message):
            parse_broker_url(bad)


def test_expression_events_hold_a_change_before_reporting_it():
    events = ExpressionEvents(hold_s=0.5, leave_s=1.0)

    def frame(t, *faces):
        return {"timestamp": t, "faces": [{"track_id": i, "label": label, "probability": 0.8} for i, label in faces]}

    assert [e["event"] for e in events(frame(0.0, (7, "Neutral")))] == ["appeared"]
    assert events(frame(0.1, (7, "Happiness"))) == []  # a flicker ...
    assert events(frame(0.2, (7, "Neutral"))) == []  # ... is not a change
    assert events(frame(0.3, (7, "Happiness"))) == [] and events(frame(0.6, (7, "Happiness"))) == []
    changed = events(frame(0.8, (7, "Happiness")))  # held for 0.5 s
    assert [(e["event"], e["label"], e["previous"]) for e in changed] == [("changed", "Happiness", "Neutral")]
    assert events.summary() == {"faces": 1, "dominant": "Happiness",
                                "present": [{"track_id": 7, "label": "Happiness", "since": 0.8}]}
    left = events(frame(2.0))
    assert [(e["event"], e["track_id"]) for e in left] == [("left", 7)] and events.summary()["faces"] == 0


def test_the_clip_on_the_broker_online_faces_events_offline(mosquitto_available, media, tmp_path):
    """A subscriber sees `online`, Home Assistant's discovery, one faces message per frame with faces (rate 0) with
    the faces that --json wrote for those frames, label-change and appear/leave events, the retained summary, and
    `offline` at the clean exit."""
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    lines = tmp_path / "f.jsonl"
    try:
        run = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--json", lines, "--mqtt",
                     f"mqtt://127.0.0.1:{broker.port}/test/cam", "--mqtt-rate", 0, "--mqtt-discovery")
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        wait_until(lambda: sub.on("test/cam/status")[-1:] == ["offline"], 10, "offline")
    finally:
        sub.close()
        broker.stop()
    assert sub.on("test/cam/status") == ["online", "offline"]
    assert f"fer-camera: publishing to mqtt://127.0.0.1:{broker.port}/test/cam under test/cam/" in err
    written = {r["frame"]: r for r in records(lines)}
    published = [json.loads(m) for m in sub.on("test/cam/faces")]
    assert len(published) == sum(1 for r in written.values() if r["faces"]) > 200
    assert all(m == written[m["frame"]] for m in published)  # the same record as the JSON line
    events = [json.loads(m) for m in sub.on("test/cam/expression")]
    kinds = {e["event"] for e in events}
    assert kinds == {"appeared", "changed", "left"}
    changes = [e for e in events if e["event"] == "changed"]
    assert all(e["label"] != e["previous"] for e in changes)
    summaries = [json.loads(m) for m in sub.on("test/cam/expression/summary")]
    assert summaries[-1]["faces"] == len(summaries[-1]["present"]) and summaries[-1]["dominant"] in \
        ["none", "Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    configs = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/sensor/")}
    assert len(configs) == 2 and all(c["state_topic"] == "test/cam/expression/summary" for c in configs.values())
    assert {c["value_template"] for c in configs.values()} == {"{{ value_json.faces }}", "{{ value_json.dominant }}"}


def test_the_last_will_says_offline_when_fer_camera_is_killed(mosquitto_available, media, tmp_path):
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    try:
        run = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--loop", "--serve", free_port(),
                     "--mqtt", f"mqtt://127.0.0.1:{broker.port}/test/will")
        wait_until(lambda: sub.on("test/will/faces"), 60, "faces on the broker")
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=30)
        wait_until(lambda: sub.on("test/will/status")[-1:] == ["offline"], 30, "the Last Will")
    finally:
        sub.close()
        broker.stop()
    assert sub.on("test/will/status") == ["online", "offline"]


def test_a_broker_that_goes_away_and_comes_back(mosquitto_available, media, tmp_path):
    """The broker is stopped mid-run and started again on the same port: the run goes on (the JSON keeps growing),
    says so, reconnects and publishes again; /metrics counts the reconnect."""
    broker = Broker(tmp_path)
    lines, port = tmp_path / "f.jsonl", free_port()
    run = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--loop", "--json", lines,
                 "--serve", port, "--mqtt", f"mqtt://127.0.0.1:{broker.port}/test/back")
    try:
        wait_until(lambda: b"fer_edge_mqtt_connected 1" in (http_get(f"http://127.0.0.1:{port}/metrics") or b""),
                   60, "the connection")
        broker.stop()
        during = len(records(lines))
        wait_until(lambda: len(records(lines)) > during + 30, 30, "frames while the broker is away")
        broker.start()
        sub = Subscriber(broker.port)
        try:
            wait_until(lambda: sub.on("test/back/faces"), 60, "faces after the broker came back")
        finally:
            sub.close()
        # /metrics shows the counters as of the latest frame, which may come a frame after the first message
        wait_until(lambda: b"fer_edge_mqtt_reconnects_total 1" in (http_get(f"http://127.0.0.1:{port}/metrics") or b""),
                   10, "the reconnect in /metrics")
        metrics = http_get(f"http://127.0.0.1:{port}/metrics").decode()
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
        broker.stop()
    assert run.returncode == 130, err
    assert "fer_edge_mqtt_reconnects_total 1" in metrics
    assert "lost the MQTT broker" in err and "reconnected to MQTT broker" in err


def test_a_broker_that_never_answers_changes_nothing_in_the_run(mosquitto_available, media, tmp_path):
    """A TCP port that accepts and never answers: one warning line, and the run writes exactly the results it writes
    without --mqtt. Its speed is measured by benchmarks/mqtt_overhead.py, not here (README: the same FPS within
    run-to-run noise on the AMD EPYC machine)."""
    silent = silent_broker()

    def run(name: str, *extra) -> tuple[list[dict], str]:
        out = tmp_path / f"{name}.jsonl"
        proc = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--json", out, *extra)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return records(out), err

    try:
        alone, _ = run("alone")
        with_mqtt, err = run("mqtt", "--mqtt", f"mqtt://127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("fer-camera: warning: MQTT broker mqtt://127.0.0.1:"), err
    assert "does not answer" in warnings[0] and "275 frames, 614 faces" in err
    assert len(with_mqtt) == len(alone) == 275
    for a, b in zip(alone, with_mqtt):
        assert [(f["track_id"], f["box"], f["label"]) for f in a["faces"]] == \
               [(f["track_id"], f["box"], f["label"]) for f in b["faces"]], a["frame"]


def test_the_warning_says_why_the_broker_is_not_connected(mosquitto_available, tmp_path):
    """The start's one warning line names the cause: nothing listening, a port that never answers, an unknown host,
    and mqtts:// against a plain MQTT port (a real mosquitto) or a port that never starts TLS."""
    from runtime.mqtt import why_unreachable

    closed, silent, broker = free_port(), silent_broker(), Broker(tmp_path)
    try:
        port = silent.getsockname()[1]
        assert why_unreachable(parse_broker_url(f"mqtt://127.0.0.1:{closed}")) == \
            f"nothing listens on 127.0.0.1:{closed} (connection refused)"
        assert why_unreachable(parse_broker_url(f"mqtt://127.0.0.1:{port}")) == \
            f"127.0.0.1:{port} accepts connections but does not answer as an MQTT broker"
        assert why_unreachable(parse_broker_url(f"mqtts://127.0.0.1:{port}")).endswith("is it an mqtts:// port?")
        assert why_unreachable(parse_broker_url("mqtt://broker.invalid")) == "unknown host broker.invalid"
        plain = why_unreachable(parse_broker_url(f"mqtts://127.0.0.1:{broker.port}"))
        assert plain.startswith(f"the TLS handshake with 127.0.0.1:{broker.port} failed") and "mqtts://" in plain
    finally:
        silent.close()
        broker.stop()


def test_nothing_listening_is_one_warning_that_says_so(mosquitto_available, media):
    closed = free_port()
    proc = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--max-frames", 10, "--mqtt",
                  f"mqtt://127.0.0.1:{closed}/t")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "10 frames" in err, err
    assert [line for line in err.splitlines() if "warning" in line] == [
        f"fer-camera: warning: MQTT broker mqtt://127.0.0.1:{closed}/t not connected: nothing listens on "
        f"127.0.0.1:{closed} (connection refused); the run goes on and publishes once it connects"]


def test_publishing_never_waits_for_a_silent_broker(paho_available):
    """publish_frame only queues: 3000 frames for a broker that never answers all return, the queue keeps the newest
    `queue_size` messages and counts the rest as dropped, and close() does not wait for the broker."""
    from runtime.mqtt import MqttPublisher

    silent = silent_broker()
    lines = []
    publisher = MqttPublisher(parse_broker_url(f"mqtt://127.0.0.1:{silent.getsockname()[1]}/t"), rate=0,
                              notify=lines.append, queue_size=50)
    try:
        assert not publisher.wait_connected(0.5)
        for i in range(3000):
            face = {"track_id": 1 + i // 100, "label": "happy", "probability": 0.9, "box": [0, 0, 10, 10]}
            publisher.publish_frame({"frame": i, "timestamp": i / 30, "faces": [face]})
        stats = publisher.stats()
        assert stats["queued"] == 50 and stats["sent"] == 0 and stats["connected"] == 0
        # every frame's record, 30 faces appearing and 29 leaving (each event with a summary), less the 50 queued
        assert stats["dropped"] == 3000 + 30 * 2 + 29 * 2 - 50, stats
        topic, payload, _ = publisher.queue[-1]
        assert topic == "t/faces" and json.loads(payload)["frame"] == 2999  # the newest stays
    finally:
        publisher.close()
        silent.close()
    assert publisher.client.is_connected() is False
    assert len(lines) == 1 and "does not answer" in lines[0]


def test_user_and_password_and_a_wrong_password(mosquitto_available, media, tmp_path):
    broker = Broker(tmp_path, user=("cam", "right-password"))
    sub = Subscriber(broker.port, auth=("cam", "right-password"))
    try:
        good = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--max-frames", 60,
                      "--mqtt", f"mqtt://cam@127.0.0.1:{broker.port}/test/auth",
                      env={"FER_EDGE_MQTT_PASSWORD": "right-password"})
        out, err = good.communicate(timeout=120)
        assert good.returncode == 0 and "warning" not in err, err
        wait_until(lambda: sub.on("test/auth/status")[-1:] == ["offline"], 10, "the run's messages")
        assert sub.on("test/auth/faces")
        bad = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--max-frames", 60, "--json",
                     tmp_path / "f.jsonl", "--mqtt", f"mqtt://cam:wrong@127.0.0.1:{broker.port}/test/auth")
        out, err = bad.communicate(timeout=120)
    finally:
        sub.close()
        broker.stop()
    assert bad.returncode == 0, err  # the run goes on
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "refused the connection" in warnings[0] and "wrong" not in err
    assert len(records(tmp_path / "f.jsonl")) == 60


def test_mqtt_without_paho_says_which_extra(tmp_path):
    code = ("import sys; sys.modules['paho'] = None; from runtime.camera import main; "
            f"sys.exit(main(['--source', {str(ROOT / 'tests' / 'data' / 'obama-480p.jpg')!r}, '--mqtt', "
            "'mqtt://127.0.0.1', '--headless']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["fer-camera: error: --mqtt is for a camera, a stream or a video"]
    code = code.replace(repr(str(ROOT / "tests" / "data" / "obama-480p.jpg")), "'0'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "fer-camera: error: --mqtt needs paho-mqtt, part of the mqtt extra: pip install 'fer-edge[mqtt]' "
        "(or, in a checkout: pip install -e '.[mqtt]')"]


def test_metrics_in_prometheus_format_match_the_run(media, tmp_path):
    """`/metrics` parsed by prometheus_client's parser: frames and faces equal what --json holds for those frames,
    the stage times add up, RSS is the process's; --serve-metrics-only serves /metrics and /health only."""
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is in the test extra")
    lines, port = tmp_path / "f.jsonl", free_port()
    run = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--json", lines, "--serve", port,
                 "--serve-metrics-only")
    try:
        def enough():
            text = http_get(f"http://127.0.0.1:{port}/metrics")
            found = re.search(rb"fer_edge_frames_total (\d+)", text or b"")
            return text if found and int(found[1]) >= 60 else None

        text = wait_until(enough, 60, "60 frames")
        missing_page = http_get(f"http://127.0.0.1:{port}/")
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    families = {f.name: f for f in parser.text_string_to_metric_families(text.decode())}
    value = lambda name: families[name].samples[0].value  # noqa: E731
    frames = int(value("fer_edge_frames"))
    assert families["fer_edge_frames"].type == "counter" and frames >= 60
    written = records(lines)[:frames]
    assert len(written) == frames and int(value("fer_edge_faces")) == sum(len(r["faces"]) for r in written)
    stages = {s.labels["stage"]: s.value for s in families["fer_edge_stage_seconds"].samples}
    assert set(stages) == {"decode", "detect", "classify", "smooth"} and stages["detect"] > 0
    assert 50e6 < value("fer_edge_resident_memory_bytes") < 2e9 and families["fer_edge_fps"].type == "gauge"
    assert missing_page is None  # 404: no page, stream or events with --serve-metrics-only


def test_mqtts_with_the_brokers_ca(mosquitto_available, media, tmp_path):
    """mosquitto with TLS (a certificate for 127.0.0.1 signed by a CA made here with openssl): with --mqtt-ca the
    run publishes; without it the certificate is not trusted, one warning line, and the run goes on."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (it makes the test's certificates)")
    run_openssl = lambda *a: subprocess.run([openssl, *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run_openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=fer-edge test CA")
    run_openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
                "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run_openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                "server.pem", "-days", "2", "-extfile", "ext.cnf")
    broker = Broker.__new__(Broker)
    broker.port = free_port()
    broker.config = tmp_path / "tls.conf"
    broker.config.write_text("\n".join([f"listener {broker.port} 127.0.0.1", "persistence false",
                                        f"user {getpass.getuser()}", "allow_anonymous true",
                                        f"cafile {tmp_path / 'ca.pem'}", f"certfile {tmp_path / 'server.pem'}",
                                        f"keyfile {tmp_path / 'server.key'}"]) + "\n")
    broker.start()
    try:
        url = f"mqtts://127.0.0.1:{broker.port}/test/tls"
        good = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--max-frames", 30, "--mqtt", url,
                      "--mqtt-ca", tmp_path / "ca.pem")
        out, err = good.communicate(timeout=120)
        assert good.returncode == 0 and f"publishing to {url} under test/tls/" in err and "warning" not in err, err
        untrusted = camera("--source", media / "short_hamilton_clip.mp4", "--headless", "--max-frames", 30,
                           "--mqtt", url)
        out, err = untrusted.communicate(timeout=120)
    finally:
        broker.stop()
    assert untrusted.returncode == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "its TLS certificate is not trusted" in warnings[0], err
    assert "give the CA that signed it with --mqtt-ca FILE" in warnings[0]
