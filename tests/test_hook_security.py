"""The hook API answers its owner only: token, Host, Origin and content type (hook_transport.py).

What a web page in the user's browser can send (a `text/plain` POST with its own `Origin`, a
DNS-rebinding request with its own `Host`) and what a local process without the token can
send are refused with 403 / 415 and a JSON error, before any route runs: the app's state is
unchanged afterwards.  The FakeApp tests talk real HTTP to 127.0.0.1; the last test does the
same against the real `gui_2.py`.
"""
from __future__ import annotations

import hmac
import json
import os
import socket
import sys
import time

import pytest

import hook_transport
from api_hooks import TOKEN_ENV, ApiHookClient, HookError, HookServer, choose_token
from tests.test_api_hooks import REPO, post_json, raw

SET_AUTO_APPROVE = {"action": "set_value", "field": "auto_approve", "value": True}


@pytest.fixture
def server(fake_app, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    srv = HookServer(fake_app, port=0, action_timeout=2.0)
    srv.start()
    yield srv
    srv.stop()


def assert_untouched(server, fake_app):
    """Nothing reached the app: no state change, no click, no answered approval, no action."""
    time.sleep(3 * fake_app.frame_interval)       # a frame that would apply a queued action
    assert fake_app.state["auto_approve"] is False
    assert fake_app.clicks == [] and fake_app.approvals == {}
    assert server.pending_action_count() == 0
    assert ApiHookClient(server.url).get_value("auto_approve") is False


def _refused(status: int, body, expected: int, needle: str) -> None:
    assert status == expected, (status, body)
    assert isinstance(body, dict) and needle.lower() in body["error"].lower(), body


# ---------------------------------------------------------------------------------- token
def test_the_url_carries_a_random_token_per_run(fake_app, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    a, b = HookServer(fake_app, port=0), HookServer(fake_app, port=0)
    assert a.token != b.token and len(a.token) >= 32
    a.start()
    try:
        assert a.url == f"http://127.0.0.1:{a.port}/?token={a.token}"
        assert ApiHookClient(a.url).get_status()["ok"] is True          # the URL as it is
    finally:
        a.stop()


@pytest.mark.parametrize("headers, path, needle", [
    ({}, "/api/gui/state", "missing token"),
    ({"Authorization": "token wrong-token-0123456789"}, "/api/gui/state", "wrong token"),
    ({}, "/api/gui/state?token=wrong-token-0123456789", "wrong token"),
    ({"Authorization": "Bearer x"}, "/status", "token <t>"),
    ({"Authorization": "token "}, "/status", "token <t>"),
])
def test_missing_or_wrong_token_is_403_even_for_reads(server, fake_app, headers, path, needle):
    status, _, body = raw(server, "GET", path, headers=headers, token=False)
    _refused(status, body, 403, needle)
    assert set(body) == {"error"}                     # nothing of the state leaks


def test_a_token_of_the_right_length_but_wrong_is_403(server, fake_app):
    near = server.token[:-1] + ("A" if server.token[-1] != "A" else "B")
    status, _, body = post_json(server, "/api/gui?wait=1", SET_AUTO_APPROVE,
                                {"Authorization": f"token {near}"})
    _refused(status, body, 403, "wrong token")
    assert_untouched(server, fake_app)


def test_no_token_post_changes_nothing(server, fake_app):
    for path, payload in (("/api/gui?wait=1", SET_AUTO_APPROVE),
                          ("/api/gui?wait=1", {"action": "click", "item": "btn_mma_plan_epic"}),
                          ("/api/mma/approve", {"request_id": "spawn-T1-1", "approved": True})):
        status, _, body = post_json(server, path, payload, token=False)
        _refused(status, body, 403, "missing token")
    assert fake_app.state["pending_approvals"], "the approval was answered without a token"
    assert_untouched(server, fake_app)


def test_token_in_the_query_or_the_header_is_accepted(server):
    status, _, body = raw(server, "GET", f"/status?token={server.token}", token=False)
    assert status == 200 and body["ok"] is True
    status, _, body = raw(server, "GET", "/status", headers={"Authorization": f"TOKEN {server.token}"})
    assert status == 200
    two = {"Authorization": f"token {server.token}"}
    status, _, body = raw(server, "GET", f"/status?token={server.token}&token=x", headers=two)
    _refused(status, body, 403, "more than one token")


def test_the_token_is_compared_in_constant_time(server, monkeypatch):
    """Every check goes through hmac.compare_digest, whose time does not depend on the guess."""
    seen = []
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)
    monkeypatch.setattr(hook_transport.hmac, "compare_digest", spy)
    raw(server, "GET", "/status", headers={"Authorization": "token guess-guess-guess-guess"})
    raw(server, "GET", "/status")
    assert [b for _a, b in seen] == [server.token.encode()] * 2


def test_mma_hook_token_chooses_the_token_and_the_client_reads_it(fake_app, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "harness-token-0123456789")
    srv = HookServer(fake_app, port=0)
    srv.start()
    try:
        assert srv.token == "harness-token-0123456789"
        assert ApiHookClient(srv.base_url).get_status()["ok"] is True    # no token in the URL: the env's
        monkeypatch.delenv(TOKEN_ENV)
        with pytest.raises(HookError) as info:
            ApiHookClient(srv.base_url).get_status()
        assert info.value.status == 403 and "missing token" in info.value.message
        assert ApiHookClient(srv.base_url, token=srv.token).get_status()["ok"] is True
    finally:
        srv.stop()


@pytest.mark.parametrize("bad", ["short", "has space in it 0123456789", "x" * 300, "tøken-0123456789abcdef"])
def test_a_malformed_chosen_token_is_refused_without_echoing_it(monkeypatch, bad):
    monkeypatch.setenv(TOKEN_ENV, bad)
    with pytest.raises(ValueError, match=TOKEN_ENV) as info:
        choose_token()
    assert bad not in str(info.value)


# ------------------------------------------------------------------------ Host and Origin
@pytest.mark.parametrize("host", [
    "rebind.attacker.example:{port}",      # DNS rebinding: the attacker's name, our address
    "127.0.0.1.nip.io:{port}",
    "127.0.0.1:{other}",                   # another port on the same machine
    "localhost:{other}",
    "127.0.0.1",                           # no port: port 80
    "192.168.1.20:{port}",
    "[::ffff:127.0.0.1]:{port}",
    "127.0.0.1:{port}:{port}",
    "",
])
def test_forged_host_is_403_and_changes_nothing(server, fake_app, host):
    value = host.format(port=server.port, other=server.port + 1)
    status, _, body = post_json(server, "/api/gui?wait=1", SET_AUTO_APPROVE, {"Host": value})
    _refused(status, body, 403, "not this server")
    assert_untouched(server, fake_app)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "127.8.9.10:{port}",
                                  "[::1]:{port}"])
def test_loopback_host_with_the_right_port_is_accepted(server, host):
    status, _, body = raw(server, "GET", "/status", headers={"Host": host.format(port=server.port)})
    assert status == 200 and body["ok"] is True


def test_two_host_headers_are_403(server, fake_app):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nHost: evil.example\r\n"
                     f"Authorization: token {server.token}\r\n\r\n".encode())
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    assert data.startswith(b"HTTP/1.0 403"), data[:200]


@pytest.mark.parametrize("origin", ["http://evil.example", "https://evil.example:443", "null",
                                    "http://127.0.0.1.evil.example", "file://", "http://[::ffff:127.0.0.1]"])
def test_forged_origin_is_403_and_changes_nothing(server, fake_app, origin):
    """Even with the right token (a page could have read it from somewhere): a foreign Origin is refused."""
    status, _, body = post_json(server, "/api/gui?wait=1", SET_AUTO_APPROVE, {"Origin": origin})
    _refused(status, body, 403, "not loopback")
    assert_untouched(server, fake_app)


def test_loopback_origin_is_accepted(server, fake_app):
    status, _, body = post_json(server, "/api/gui?wait=1", SET_AUTO_APPROVE,
                                {"Origin": f"http://localhost:{server.port}"})
    assert status == 200 and body["ok"] is True and fake_app.state["auto_approve"] is True


def test_the_browser_attack_text_plain_post_with_foreign_origin(server, fake_app):
    """What a page can send without a CORS preflight: text/plain, its own Origin, no token."""
    body = json.dumps(SET_AUTO_APPROVE).encode()
    status, _, answer = raw(server, "POST", "/api/gui?wait=1", body, token=False, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Content-Length": str(len(body)),
        "Origin": "https://evil.example"})
    assert status == 403 and answer["error"]
    assert_untouched(server, fake_app)


# ---------------------------------------------------------------------------- content type
@pytest.mark.parametrize("ctype", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonp", None])
def test_post_that_is_not_json_is_415_and_changes_nothing(server, fake_app, ctype):
    body = json.dumps(SET_AUTO_APPROVE).encode()
    headers = {"Content-Length": str(len(body))}
    if ctype is not None:
        headers["Content-Type"] = ctype
    status, _, answer = raw(server, "POST", "/api/gui?wait=1", body, headers)
    _refused(status, answer, 415, "application/json")
    assert_untouched(server, fake_app)


def test_json_with_a_charset_is_accepted(server, fake_app):
    status, _, body = post_json(server, "/api/gui?wait=1", SET_AUTO_APPROVE,
                                {"Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 200 and fake_app.state["auto_approve"] is True


def test_a_refused_post_with_a_large_body_still_gets_its_answer(server, fake_app):
    """The body is not read before the refusal; the client still reads the 403, not a reset."""
    body = b"x" * (512 * 1024)
    status, _, answer = raw(server, "POST", "/api/gui", body, token=False,
                            headers={"Content-Type": "text/plain", "Content-Length": str(len(body))})
    assert status == 403 and "missing token" in answer["error"]
    assert_untouched(server, fake_app)


def test_refusals_are_counted_and_the_token_never_logged(server, caplog):
    import logging
    with caplog.at_level(logging.DEBUG, logger="api_hooks"):
        raw(server, "GET", "/status", token=False)
        raw(server, "GET", f"/status?token={server.token}", token=False)
        raw(server, "GET", "/status?token=guessed-0123456789abcdef", token=False)
    assert ApiHookClient(server.url).get_diagnostics()["server"]["refused"] == 2
    assert not any(server.token in r.getMessage() for r in caplog.records), "the token reached the log"
    assert not any("guessed-0123456789abcdef" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------- real app
def test_real_app_refuses_forged_requests_and_keeps_its_state(xvfb_display, tmp_path):
    """The real gui_2.py: each forged request is refused and auto_approve / the epic stay as they
    were; MMA_TEST_HOOKS=1 alone opens nothing (only --enable-test-hooks does)."""
    from tests.visual_sim_mma_v2 import AppProcess
    env = {**os.environ, "DISPLAY": xvfb_display, "MMA_TEST_HOOKS": "1"}
    env.pop(TOKEN_ENV, None)
    argv = [sys.executable, os.path.join(REPO, "gui_2.py"), "--project", str(tmp_path / "project"),
            "--provider", "mock", "--window-size", "640x400", "--no-ini", "--enable-test-hooks", "--hook-port", "0"]
    app = AppProcess(argv, env, str(tmp_path), "forged").start()
    try:
        url = app.wait_url(60)
        client = ApiHookClient(url, timeout=10)
        assert client.wait_for_server(30)
        port = client.base_url.rsplit(":", 1)[1]
        payload = json.dumps(SET_AUTO_APPROVE).encode()
        good = {"Host": f"127.0.0.1:{port}", "Authorization": f"token {client.token}",
                "Content-Type": "application/json"}
        forged = [
            ({**good, "Origin": "https://evil.example"}, 403),
            ({**good, "Host": f"rebind.attacker.example:{port}"}, 403),
            ({**good, "Content-Type": "text/plain"}, 415),
            ({k: v for k, v in good.items() if k != "Authorization"}, 403),
            ({**good, "Authorization": "token not-the-token-0123456789"}, 403),
        ]
        for headers, expected in forged:
            status, answer = _post(int(port), "/api/gui?wait=1", payload, headers)
            assert status == expected and answer["error"], (headers, status, answer)
        epic = {"action": "set_value", "field": "mma_epic_input", "value": "rm -rf everything"}
        status, _ = _post(int(port), "/api/gui?wait=1", json.dumps(epic).encode(),
                          {**good, "Origin": "null"})
        assert status == 403
        client.set_value("ai_input", "probe")             # waited: any queued action has been applied
        assert client.get_value("auto_approve") is False
        assert client.get_value("mma_epic_input") == ""
        assert client.get_diagnostics()["server"]["refused"] == len(forged) + 1
    finally:
        app.stop()


def _post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_real_app_with_only_mma_test_hooks_listens_nowhere(xvfb_display, tmp_path):
    """MMA_TEST_HOOKS=1 without --enable-test-hooks: no URL announced, a warning says why."""
    from tests.visual_sim_mma_v2 import AppProcess
    env = {**os.environ, "DISPLAY": xvfb_display, "MMA_TEST_HOOKS": "1"}
    argv = [sys.executable, os.path.join(REPO, "gui_2.py"), "--project", str(tmp_path / "project"),
            "--provider", "mock", "--window-size", "640x400", "--no-ini", "--max-frames", "30"]
    app = AppProcess(argv, env, str(tmp_path), "env_only").start()
    try:
        code = app.wait_exit(60)
    finally:
        app.stop()
    assert code == 0, app.tail()
    assert app.url is None
    assert "MMA_TEST_HOOKS no longer opens the hook API" in app.log_text()
