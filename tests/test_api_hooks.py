"""HookServer / ApiHookClient against a FakeApp that honours the App contract.

FakeApp runs a "frame" thread that applies queued actions and republishes its
snapshot, like gui_2.App does on the GUI thread.  Every test talks real HTTP to
127.0.0.1.
"""
from __future__ import annotations

import concurrent.futures
import copy
import http.client
import json
import logging
import os
import queue
import socket
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import api_hooks
from api_hooks import ApiHookClient, AppGoneError, HookError, HookServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeApp:
    """Implements get_state_snapshot / submit_action / get_field / get_performance."""

    SETTABLE = {"mma_epic_input": str, "ai_input": str, "current_provider": str,
                "current_model": str, "auto_approve": bool}
    CLICKS = {"btn_mma_plan_epic", "btn_mma_accept_track", "btn_mma_reject_track", "btn_mma_pause",
              "btn_mma_resume", "btn_mma_abort", "btn_save_project", "btn_send"}

    def __init__(self, frame_interval: float = 0.005, publish_delay: float = 0.0):
        self._actions: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.stalled = threading.Event()        # set: the "GUI thread" stops applying actions
        self.stop_event = threading.Event()
        self.frame_interval = frame_interval
        self.publish_delay = publish_delay      # widgets drawn between applying and publishing
        self.clicks: list[tuple[str, dict]] = []
        self.approvals: dict[str, dict] = {}    # request_id -> decision given
        self.state = {
            "mma_status": "idle", "active_tier": None, "active_track": None, "tickets": [],
            "tracks": [], "mma_streams": {"Tier 1": "plan"}, "mma_tier_usage": {
                "Tier 1": {"input": 3, "output": 4, "model": "m1"}},
            "pending_approvals": [
                {"request_id": "spawn-T1-1", "kind": "spawn", "ticket_id": "T1",
                 "payload": {"prompt": "Ticket T1: survey", "context_md": ""}}],
            "errors": [], "provider": "mock", "model": "mock-model", "epic": "",
            "frame_count": 0, "fps": 60.0, "project_dir": "/tmp/p",
            "discussion": [{"role": "user", "text": "hi"}], "comms_log_count": 2,
            "mma_epic_input": "", "ai_input": "", "current_provider": "mock",
            "current_model": "mock-model", "auto_approve": False,
        }
        self._snapshot = copy.deepcopy(self.state)
        self._thread = threading.Thread(target=self._frames, name="fake-gui", daemon=True)
        self._thread.start()

    # -- the contract --------------------------------------------------------------
    def get_state_snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._snapshot)

    def submit_action(self, action: dict) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._actions.put((dict(action), future))
        return future

    def get_field(self, name: str):
        with self._lock:
            if name not in self._snapshot:
                raise KeyError(f"no GUI field named {name!r}")
            return copy.deepcopy(self._snapshot[name])

    def get_performance(self) -> dict:
        with self._lock:
            return {"fps": self._snapshot["fps"], "frame_count": self._snapshot["frame_count"],
                    "frame_ms_mean": 1.0}

    # -- the fake GUI thread --------------------------------------------------------
    def _frames(self) -> None:
        while not self.stop_event.wait(self.frame_interval):
            if self.stalled.is_set():
                continue
            while True:
                try:
                    action, future = self._actions.get_nowait()
                except queue.Empty:
                    break
                try:
                    future.set_result(self._apply(action))
                except ValueError as exc:
                    future.set_exception(exc)
            if self.publish_delay:
                time.sleep(self.publish_delay)
            self.state["frame_count"] += 1
            with self._lock:
                self._snapshot = copy.deepcopy(self.state)

    def _apply(self, action: dict) -> dict:
        kind = action.get("action")
        if kind == "set_value":
            field, value = action.get("field"), action.get("value")
            if field not in self.SETTABLE:
                raise ValueError(f"unknown or read-only field {field!r}")
            if not isinstance(value, self.SETTABLE[field]):
                raise ValueError(f"{field} must be {self.SETTABLE[field].__name__}")
            self.state[field] = value
            return {"ok": True, "field": field, "value": value}
        if kind == "click":
            item = action.get("item")
            if item not in self.CLICKS:
                raise ValueError(f"unknown button {item!r}")
            self.clicks.append((item, action.get("args") or {}))
            return {"ok": True, "item": item}
        if kind == "approve":
            rid = action.get("request_id")
            pending = [p for p in self.state["pending_approvals"] if p["request_id"] == rid]
            if not pending:
                raise ValueError(f"unknown approval request {rid!r}")
            self.state["pending_approvals"].remove(pending[0])
            self.approvals[rid] = {k: v for k, v in action.items() if k not in ("action", "request_id")}
            return {"ok": True, "request_id": rid}
        raise ValueError(f"unknown action {kind!r}")

    def close(self) -> None:
        self.stop_event.set()
        self._thread.join(2)


@pytest.fixture
def server(fake_app):
    srv = HookServer(fake_app, port=0, action_timeout=2.0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    c = ApiHookClient(server.url, timeout=5.0)
    assert c.wait_for_server(5), "hook server did not answer /status"
    return c


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
        token: bool = True):
    """One HTTP exchange with full control of headers; returns (status, headers, parsed JSON).

    The server's token goes in `Authorization` unless `token=False` or `headers` has its own;
    http.client sends `Host: 127.0.0.1:<port>` unless `headers` has one."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = dict(headers or {})
    if token and "Authorization" not in headers:
        headers["Authorization"] = f"token {server.token}"
    try:
        conn.putrequest(method, path, skip_accept_encoding=True, skip_host="Host" in headers)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type")
        assert ctype == "application/json", f"{method} {path}: Content-Type {ctype!r}, body {data[:200]!r}"
        return resp.status, dict(resp.getheaders()), json.loads(data) if data else None
    finally:
        conn.close()


def post_json(server, path: str, payload, extra_headers=None, token: bool = True):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(extra_headers or {})}
    return raw(server, "POST", path, body, headers, token=token)


def request_head(server, request_line: str) -> bytes:
    """The start of a raw request to `server` that passes its owner checks (Host, token)."""
    return (f"{request_line}\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: token {server.token}\r\n").encode()


def assert_still_serving(client):
    status = client.get_status()
    assert status["ok"] is True, f"server stopped answering /status: {status}"


# ---------------------------------------------------------------------------------
# routes
# ---------------------------------------------------------------------------------
def test_status_reports_frames_advancing(client):
    first = client.get_status()
    assert first["ok"] is True and first["provider"] == "mock" and first["fps"] == 60.0
    client.wait_for(lambda: client.get_status()["frame_count"] > first["frame_count"] + 2, timeout=5,
                    message="frame_count to advance")


def test_state_snapshot_is_full(client, fake_app):
    state = client.get_state()
    for key in ("mma_status", "tickets", "tracks", "mma_streams", "pending_approvals", "project_dir"):
        assert key in state, f"state lacks {key}"
    assert state["mma_streams"] == {"Tier 1": "plan"}


def test_get_value_and_unknown_field(client, server):
    assert client.get_value("provider") == "mock"
    with pytest.raises(HookError) as info:
        client.get_value("no_such_field")
    assert info.value.status == 400 and "no_such_field" in info.value.message
    status, _, body = raw(server, "GET", "/api/gui/value")
    assert status == 400 and "field" in body["error"]
    assert_still_serving(client)


def test_set_value_wait_applies_on_frame_thread(client, fake_app):
    result = client.set_value("mma_epic_input", "Build a thing")
    assert result["ok"] is True and isinstance(result["action_id"], int)
    assert fake_app.state["mma_epic_input"] == "Build a thing"
    assert client.get_value("mma_epic_input") == "Build a thing"


def test_waited_action_is_visible_to_the_next_read():
    """Like gui_2.App: actions resolve at frame start, the snapshot is published at frame end."""
    app = FakeApp(frame_interval=0.01, publish_delay=0.04)
    srv = HookServer(app, port=0)
    srv.start()
    try:
        client = ApiHookClient(srv.url)
        for i in range(8):
            result = client.set_value("ai_input", f"value {i}")
            assert "published" not in result, result
            assert client.get_value("ai_input") == f"value {i}", f"read {i} did not see its own write"
    finally:
        srv.stop()
        app.close()


class PublishFirstApp(FakeApp):
    """Like gui_2.App: a frame applies its actions, publishes, and only then resolves the futures."""
    resolves_after_publish = True
    stall_after_apply = False          # publish the applying frame, then no frame ever again

    def _frames(self) -> None:
        while not self.stop_event.wait(self.frame_interval):
            if self.stalled.is_set():
                continue
            done = []
            while True:
                try:
                    action, future = self._actions.get_nowait()
                except queue.Empty:
                    break
                try:
                    done.append((future, self._apply(action), None))
                except ValueError as exc:
                    done.append((future, None, exc))
            self.state["frame_count"] += 1
            with self._lock:
                self._snapshot = copy.deepcopy(self.state)
            if done and self.stall_after_apply:
                self.stalled.set()
            for future, result, error in done:
                future.set_exception(error) if error else future.set_result(result)


def test_app_that_resolves_after_publishing_is_answered_without_another_frame():
    """No frame follows the applying one, yet the waited write is answered at once and readable."""
    app = PublishFirstApp(frame_interval=0.01)
    app.stall_after_apply = True
    srv = HookServer(app, port=0, action_timeout=5.0)
    srv.start()
    try:
        client = ApiHookClient(srv.url)
        t0 = time.monotonic()
        result = client.set_value("ai_input", "mine")
        assert time.monotonic() - t0 < 2.0, "the server waited for a frame that never came"
        assert "published" not in result, result
        frame = client.get_status()["frame_count"]
        assert client.get_value("ai_input") == "mine"
        assert client.get_status()["frame_count"] == frame       # really no later frame
    finally:
        srv.stop()
        app.close()


def test_set_value_without_wait_is_queued_then_recorded(client, fake_app):
    queued = client.set_value("auto_approve", True, wait=False)
    assert queued == {"queued": True, "action_id": queued["action_id"]}
    outcome = client.wait_for(lambda: (o := client.get_action(queued["action_id"]))["done"] and o,
                              timeout=5, message="queued action to be applied")
    assert outcome["ok"] is True and fake_app.state["auto_approve"] is True


def test_set_value_bad_value_is_400(client):
    with pytest.raises(HookError) as info:
        client.set_value("auto_approve", "yes please")
    assert info.value.status == 400 and "bool" in info.value.message


def test_click_with_args(client, fake_app):
    result = client.click("btn_mma_accept_track", track_id="tr1")
    assert result["ok"] is True
    assert fake_app.clicks[-1] == ("btn_mma_accept_track", {"track_id": "tr1"})
    with pytest.raises(HookError) as info:
        client.click("btn_does_not_exist")
    assert info.value.status == 400 and "btn_does_not_exist" in info.value.message


def test_mma_status_subset(client):
    mma = client.get_mma_status()
    assert set(mma) == set(api_hooks.MMA_KEYS)
    assert mma["pending_approvals"][0]["request_id"] == "spawn-T1-1"
    assert mma["mma_tier_usage"]["Tier 1"]["input"] == 3


def test_approve_with_edits_reaches_app(client, fake_app):
    req = client.wait_for_approval(kind="spawn", timeout=2)
    result = client.approve(req["request_id"], True, prompt="Ticket T1: MARKER survey", context_md="ctx")
    assert result["ok"] is True
    assert fake_app.approvals["spawn-T1-1"] == {"approved": True, "prompt": "Ticket T1: MARKER survey",
                                                "context_md": "ctx"}
    client.wait_for(lambda: not client.get_mma_status()["pending_approvals"], timeout=2,
                    message="approval to leave the pending list")


def test_approve_unknown_id_is_404(client, server):
    with pytest.raises(HookError) as info:
        client.approve("spawn-nope-99", True)
    assert info.value.status == 404 and "spawn-nope-99" in info.value.message
    status, _, body = post_json(server, "/api/gui?wait=1",
                                {"action": "approve", "request_id": "x-1", "approved": False})
    assert status == 404 and "x-1" in body["error"]
    assert_still_serving(client)


def test_approve_bad_types_are_400(client, server):
    for payload in ({"request_id": 5, "approved": True}, {"request_id": "a", "approved": "yes"},
                    {"request_id": "a", "approved": True, "prompt": 3},
                    {"request_id": "a", "approved": True, "args": []},
                    {"request_id": "a", "approved": True, "colour": "red"}):
        status, _, body = post_json(server, "/api/mma/approve", payload)
        assert status == 400, (payload, status, body)
        assert body["error"]
    assert_still_serving(client)


def test_session_performance_diagnostics(client, server):
    session = client.get_session()
    assert session["provider"] == "mock" and session["discussion"][0]["text"] == "hi"
    assert session["comms_log_count"] == 2
    perf = client.get_performance()
    assert perf["frame_ms_mean"] == 1.0
    diag = client.get_diagnostics()
    assert diag["performance"]["fps"] == 60.0
    assert "fake-gui" in diag["threads"] and f"hook-server-{server.port}" in diag["threads"]
    assert diag["pending_actions"] == 0
    assert diag["routes"]["/api/gui"] == ["POST"]


def test_head_and_trailing_slash(server):
    status, headers, body = raw(server, "HEAD", "/status")
    assert status == 200 and body is None and int(headers["Content-Length"]) > 0
    status, _, body = raw(server, "GET", "/status/")
    assert status == 200 and body["ok"] is True


# ---------------------------------------------------------------------------------
# bad requests: right 4xx JSON, and the server keeps serving
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "malformed JSON"),
    (b"\xff\xfe\x00garbage", 400, "UTF-8"),
    (b"   ", 400, "empty body"),
    (b"[1, 2, 3]", 400, "JSON object"),
    (b"\"just a string\"", 400, "JSON object"),
    (b"{}", 400, "action"),
    (b'{"action": 7}', 400, "action"),
    (b'{"action": "set_value", "field": "no_such_field", "value": 1}', 400, "no_such_field"),
    (b'{"action": "set_value", "field": "ai_input"}', 400, "value"),
    (b'{"action": "click"}', 400, "item"),
    (b'{"action": "click", "item": "btn_send", "args": [1]}', 400, "args"),
    (b'{"action": "explode"}', 400, "unknown action"),
    (b'{"action": "set_value", "field": "ai_input", "value": "x", "wait": "yes"}', 400, "wait"),
    (b"[" * 100000 + b"]" * 100000, 400, "JSON"),
    (b'{"action": "set_value", "field": "ai_input", "value": NaN}', 400, "NaN"),
])
def test_bad_bodies(server, client, body, status, needle):
    got, _, payload = post_json(server, "/api/gui", body)
    assert got == status, f"{body[:60]!r}: expected {status}, got {got} {payload}"
    assert needle.lower() in payload["error"].lower(), payload
    assert_still_serving(client)


def test_unknown_field_rejected_even_without_wait(server, client, fake_app):
    status, _, body = post_json(server, "/api/gui", {"action": "set_value", "field": "bogus", "value": 1})
    assert status == 400 and "bogus" in body["error"]


def test_unknown_action_rejected_even_without_wait(server, client):
    status, _, body = post_json(server, "/api/gui", {"action": "teleport"})
    assert status == 400 and "teleport" in body["error"]


def test_wrong_method_is_405_with_allow(server, client):
    status, headers, body = raw(server, "GET", "/api/gui")
    assert status == 405 and headers["Allow"] == "POST" and "GET" in body["error"]
    status, headers, body = post_json(server, "/status", {"a": 1})
    assert status == 405 and headers["Allow"] == "GET"
    status, headers, body = raw(server, "DELETE", "/api/gui/state")
    assert status == 405 and headers["Allow"] == "GET"
    assert_still_serving(client)


def test_unsupported_http_method_answers_json(server, client):
    status, _, body = raw(server, "BREW", "/status")
    assert status == 501 and body["error"]
    assert_still_serving(client)


def test_unknown_route_is_404(server, client):
    status, _, body = raw(server, "GET", "/api/nope")
    assert status == 404 and "/api/nope" in body["error"]
    with pytest.raises(HookError) as info:
        client._get("/also/missing")
    assert info.value.status == 404
    assert_still_serving(client)


def test_missing_content_length_is_411(server, client):
    status, _, body = raw(server, "POST", "/api/gui", None, {"Content-Type": "application/json"})
    assert status == 411 and "Content-Length" in body["error"]
    status, _, body = raw(server, "POST", "/api/gui", b"5\r\n{\"a\":\r\n0\r\n\r\n",
                          {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert status == 411
    status, _, body = raw(server, "POST", "/api/gui", None,
                          {"Content-Type": "application/json", "Content-Length": "lots"})
    assert status == 400 and "Content-Length" in body["error"]
    assert_still_serving(client)


def test_oversized_body_is_413_full_body_sent(server, client):
    big = b'{"action": "set_value", "field": "ai_input", "value": "' + b"x" * (1024 * 1024) + b'"}'
    status, _, body = post_json(server, "/api/gui", big)
    assert status == 413 and "limit" in body["error"]
    assert_still_serving(client)


def test_oversized_body_is_413_without_reading_it(server, client):
    """Announce 50 MiB, send nothing: the answer comes at once (the server did not try to read it)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_head(server, "POST /api/gui HTTP/1.1")
                     + b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 413"), head
    assert b"application/json" in head and "limit" in json.loads(payload)["error"]
    assert_still_serving(client)


def test_truncated_body_is_400(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_head(server, "POST /api/gui HTTP/1.1")
                     + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\"")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.0 400"), data[:100]
    assert_still_serving(client)


def test_garbage_request_line_answers_json(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x00\x01 nonsense here and more\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0] and json.loads(payload)["error"]
    assert_still_serving(client)


# ---------------------------------------------------------------------------------
# stalled GUI thread, handler crashes, logging
# ---------------------------------------------------------------------------------
def test_action_timeout_is_504_not_a_hang(fake_app):
    srv = HookServer(fake_app, port=0, action_timeout=0.3)
    srv.start()
    try:
        client = ApiHookClient(srv.url)
        fake_app.stalled.set()
        t0 = time.monotonic()
        with pytest.raises(HookError) as info:
            client.set_value("ai_input", "late")
        elapsed = time.monotonic() - t0
        assert info.value.status == 504 and "not applied within" in info.value.message
        assert elapsed < 3, f"504 took {elapsed:.1f}s"
        with pytest.raises(HookError) as info:
            client.approve("spawn-T1-1", True)
        assert info.value.status == 504
        assert_still_serving(client)
        assert client.get_diagnostics()["pending_actions"] == 2
        fake_app.stalled.clear()                  # the GUI thread recovers: the actions land late
        client.wait_for(lambda: client.get_diagnostics()["pending_actions"] == 0, timeout=5,
                        message="stalled actions to be applied")
        assert fake_app.state["ai_input"] == "late"
    finally:
        srv.stop()


def test_handler_exception_is_500_and_logged(fake_app, caplog):
    class Broken(FakeApp):
        def get_performance(self):
            raise RuntimeError("perf counter exploded")
    app = Broken()
    srv = HookServer(app, port=0)
    srv.start()
    try:
        client = ApiHookClient(srv.url)
        with caplog.at_level(logging.ERROR, logger="api_hooks"):
            with pytest.raises(HookError) as info:
                client.get_performance()
        assert info.value.status == 500 and "perf counter exploded" in info.value.message
        assert any("hook handler crashed" in r.getMessage() and r.exc_info for r in caplog.records)
        assert_still_serving(client)
    finally:
        srv.stop()
        app.close()


def test_requests_logged_at_debug_not_stderr(server, client, capfd, caplog):
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="api_hooks"):
        client.get_status()
    out, err = capfd.readouterr()
    assert "GET /status" not in err, "request log leaked to stderr"
    assert any("GET /status" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_start_logs_url(fake_app, caplog):
    srv = HookServer(fake_app, port=0)
    with caplog.at_level(logging.INFO, logger="api_hooks"):
        port = srv.start()
    try:
        assert port > 0 and srv.base_url == f"http://127.0.0.1:{port}"
        assert srv.url == f"http://127.0.0.1:{port}/?token={srv.token}"
        assert any(f"http://127.0.0.1:{port}" in r.getMessage() and r.levelno >= logging.WARNING
                   for r in caplog.records), "the URL line must reach stderr without logging config"
        assert not any(srv.token in r.getMessage() for r in caplog.records), "the token was logged"
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------
# security: loopback only, opt-in
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "172.16.5.4",
                                  "8.8.8.8", "2001:4860:4860::8888", "::ffff:127.0.0.1", "", "not a host!"])
def test_refuses_non_loopback_hosts(fake_app, host):
    with pytest.raises(ValueError, match="loopback"):
        HookServer(fake_app, host=host, port=0).start()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_accepts_loopback_hosts(fake_app, host):
    srv = HookServer(fake_app, host=host, port=0)
    srv.start()
    try:
        assert srv.bind_host.startswith("127."), srv.bind_host
        assert ApiHookClient(srv.url).get_status()["ok"] is True
        assert srv._httpd.server_address[0].startswith("127.")
    finally:
        srv.stop()


def test_ipv6_loopback_when_available(fake_app):
    if not socket.has_ipv6:
        pytest.fail("this machine kind has IPv6 sockets; the test expects them")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        # No ::1 on this host: the server must then fail loudly, not fall back to another address.
        with pytest.raises(OSError):
            HookServer(fake_app, host="::1", port=0).start()
        logging.getLogger(__name__).info("no IPv6 loopback here: %s", exc)
        return
    srv = HookServer(fake_app, host="::1", port=0)
    srv.start()
    try:
        assert srv.base_url == f"http://[::1]:{srv.port}"
        assert ApiHookClient(srv.url).get_status()["ok"] is True
    finally:
        srv.stop()


def test_port_in_use_is_a_clear_error(fake_app):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*port 0 picks a free one"):
            HookServer(fake_app, port=port).start()


def test_stop_closes_socket_and_client_sees_app_gone(fake_app):
    srv = HookServer(fake_app, port=0)
    port = srv.start()
    client = ApiHookClient(srv.url, timeout=2)
    assert client.get_status()["ok"]
    srv.stop()
    srv.stop()                                    # idempotent
    assert not srv.running
    with pytest.raises(AppGoneError):
        client.get_status()
    with pytest.raises(AppGoneError):
        client.set_value("ai_input", "x")
    assert client.wait_for_server(0.3) is False
    with socket.socket() as s:                    # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_client_connection_reset_is_app_gone():
    """A listener that accepts and slams the connection shut: AppGoneError, not a bare socket error."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        port = lsock.getsockname()[1]

        def slam():
            conn, _ = lsock.accept()
            conn.recv(1024)
            conn.close()
        t = threading.Thread(target=slam, daemon=True)
        t.start()
        with pytest.raises(AppGoneError):
            ApiHookClient(f"http://127.0.0.1:{port}", timeout=3).get_status()
        t.join(3)


def test_client_timeout_is_hook_timeout():
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()                            # accepts (kernel backlog) but never answers
        port = lsock.getsockname()[1]
        with pytest.raises(api_hooks.HookTimeoutError):
            ApiHookClient(f"http://127.0.0.1:{port}", timeout=0.3).get_status()


def test_wait_for_times_out_with_message(client):
    with pytest.raises(TimeoutError, match="the impossible"):
        client.wait_for(lambda: False, timeout=0.2, interval=0.05, message="the impossible")
    with pytest.raises(TimeoutError, match="kind 'tool'"):
        client.wait_for_approval(kind="tool", timeout=0.2)


def _app_process(tmp_path, display: str, name: str, *extra: str):
    from tests.visual_sim_mma_v2 import AppProcess
    env = {**os.environ, "DISPLAY": display}
    env.pop("MMA_TEST_HOOKS", None)
    argv = [sys.executable, os.path.join(REPO, "gui_2.py"), "--project", str(tmp_path / "project"),
            "--provider", "mock", "--window-size", "640x400", "--no-ini", *extra]
    return AppProcess(argv, env, str(tmp_path), name).start()


def test_real_app_without_hooks_listens_nowhere(xvfb_display, tmp_path):
    """gui_2.main without --enable-test-hooks: no hook port, not 8999 and not the one asked for."""
    port = _free_port()
    app = _app_process(tmp_path, xvfb_display, "hooks_off", "--hook-port", str(port), "--max-frames", "60")
    try:
        probed = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and app.proc.poll() is None:
            for p in (port, api_hooks.DEFAULT_PORT):
                with socket.socket() as s:
                    s.settimeout(0.2)
                    assert s.connect_ex(("127.0.0.1", p)) != 0, f"something listens on {p} with hooks off"
            probed = True
            time.sleep(0.1)
        code = app.wait_exit(60)
    finally:
        app.stop()
    assert probed, "the app exited before it could be probed"
    assert code == 0, f"app exited {code}: {app.tail()}"
    assert app.url is None and "http://127.0.0.1" not in app.tail(1000), "hook URL announced although hooks are off"


def test_real_app_with_hooks_serves_then_closes_on_exit(xvfb_display, tmp_path):
    """--enable-test-hooks: stdout says `MMA_HOOKS <url>`, /status answers, the port closes at exit."""
    app = _app_process(tmp_path, xvfb_display, "hooks_on", "--enable-test-hooks", "--hook-port", "0",
                       "--max-frames", "120")
    try:
        url = app.wait_url(60)
        client = ApiHookClient(url)
        assert client.wait_for_server(30), f"{url} did not answer"
        assert client.get_status()["provider"] == "mock"
        code = app.wait_exit(60)                  # the app exits after --max-frames
    finally:
        app.stop()
    assert code == 0, f"app exited {code}: {app.tail()}"
    with open(app.out_path, encoding="utf-8") as f:
        assert f.read().splitlines()[0] == f"MMA_HOOKS {url}", "stdout must start with the hook URL line"
    base = url.split("/?")[0]
    assert f"hook API listening on {base}" in app.log_text()      # and the log line stays (no token)
    with pytest.raises(AppGoneError):
        client.get_status()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------
# fuzz: whatever is POSTed, the server answers JSON and never 5xx for client errors
# ---------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
action_like = st.fixed_dictionaries(
    {"action": st.sampled_from(["set_value", "click", "approve", "bogus", ""]) | st.text(max_size=8)},
    optional={"field": st.sampled_from(["ai_input", "auto_approve", "nope"]) | json_values,
              "value": json_values, "item": st.sampled_from(["btn_send", "btn_x"]) | json_values,
              "args": json_values, "request_id": st.sampled_from(["spawn-T1-1", "zz"]) | json_values,
              "approved": json_values, "prompt": json_values, "wait": json_values})


@pytest.fixture(scope="module")
def fuzz_server():
    app = FakeApp(frame_interval=0.001)
    srv = HookServer(app, port=0, action_timeout=2.0)
    srv.start()
    yield srv
    srv.stop()
    app.close()


def _check_fuzz_answer(srv, path, body: bytes):
    status, _, payload = post_json(srv, path, body)
    assert isinstance(payload, dict), payload
    assert status < 500, f"{path} {body[:80]!r} -> {status} {payload}"
    if status >= 400:
        assert isinstance(payload.get("error"), str) and payload["error"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_fuzz_random_bytes(fuzz_server, body):
    _check_fuzz_answer(fuzz_server, "/api/gui", body)


@settings(max_examples=150, deadline=None)
@given(payload=json_values | action_like, path=st.sampled_from(["/api/gui", "/api/gui?wait=1", "/api/mma/approve"]))
def test_fuzz_random_json(fuzz_server, payload, path):
    _check_fuzz_answer(fuzz_server, path, json.dumps(payload).encode())
    assert ApiHookClient(fuzz_server.url).get_status()["ok"] is True


@settings(max_examples=150, deadline=None)
@given(target=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
def test_fuzz_request_targets(fuzz_server, target, method):
    """Any printable request target and method: a JSON answer, never a 5xx."""
    status, _, payload = raw(fuzz_server, method, "/" + target.lstrip("/"), b"{}" if method == "POST" else None,
                             {"Content-Length": "2"} if method == "POST" else None)
    assert status < 500 or status == 501, (method, target, status, payload)
    if method != "HEAD":
        assert isinstance(payload, dict) and (status < 400 or payload.get("error")), payload



def test_network_path_target_is_just_a_path(server, client):
    status, _, body = raw(server, "GET", "//[not-an-ipv6/status")
    assert status == 404 and body["error"]
    status, _, body = raw(server, "GET", "//status")
    assert status == 200 and body["ok"] is True
    assert_still_serving(client)
