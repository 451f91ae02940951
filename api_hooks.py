"""Opt-in loopback HTTP hook API for tests and automation (the client is in api_hook_client.py).

`HookServer(app)` exposes the running `gui_2.App` over plain JSON-over-HTTP on
127.0.0.1 only, to its owner only: every request carries the run's token (random per
run, or `MMA_HOOK_TOKEN`; `server.url` is the URL with it, as `gui_2.main` prints it),
names this server in `Host`, and sends no foreign `Origin` (hook_transport.py).  It
never touches GUI state directly: reads come from
`app.get_state_snapshot()` / `app.get_field()` / `app.get_performance()` (copies
published once per frame), writes go through `app.submit_action()`, which the
App applies on the GUI thread at the next frame and resolves a
`concurrent.futures.Future`.  A future that never resolves costs the caller a
504 after `action_timeout` seconds, never a hung server.

Read-your-writes: a waited action is answered only once a snapshot containing
its change is published.  An app that resolves its futures after publishing
says so with `resolves_after_publish = True` (gui_2.App does) and is answered
at once; for any other app the server waits for the next published frame.

The HTTP side (loopback check, JSON bodies and answers, the request handler) is
`hook_transport.py`; this module holds the routes, action validation and the
read-your-writes bookkeeping.  `ApiHookClient` (and `HookError`, `AppGoneError`,
`HookTimeoutError`) live in `api_hook_client.py` and are re-exported here.

Routes (see docs/guide_tools.md, "Hook API"):

    GET  /status                 {"ok": true, "frame_count", "fps", "provider"}
    GET  /api/gui/state          the full state snapshot
    GET  /api/gui/value?field=X  {"field": X, "value": ...}       (400 unknown field)
    POST /api/gui                an action dict                   (202 queued, or 200 with ?wait=1)
    GET  /api/gui/action?id=N    outcome of a queued action
    GET  /api/gui/mma_status     the MMA subset of the snapshot
    POST /api/mma/approve        answer a pending approval        (404 unknown request id)
    GET  /api/session            discussion, chat and the comms log (`comms_log`, `comms_count`)
    GET  /api/performance        app.get_performance()
    GET  /api/diagnostics        performance + threads + pending actions + server counters

Errors are always JSON `{"error": "..."}` with a 4xx/5xx status; the server
keeps serving after any of them.
"""
from __future__ import annotations

import collections
import concurrent.futures
import ipaddress
import itertools
import logging
import os
import re
import secrets
import threading
import time
from typing import Any

from api_hook_client import (
    DEFAULT_ACTION_TIMEOUT,
    DEFAULT_PORT,
    ApiHookClient,
    AppGoneError,
    HookError,
    HookTimeoutError,
)
from hook_transport import (
    MAX_BODY_BYTES,
    TOKEN_QUERY,
    HookHTTPServer,
    Query,
    RequestError,
    Route,
    bind_server,
    is_loopback_host,
)

# The client names are re-exported: `from api_hooks import ApiHookClient, HookError` is the front door.
__all__ = ["ACTION_HISTORY", "DEFAULT_ACTION_TIMEOUT", "DEFAULT_PORT", "KNOWN_ACTIONS", "MAX_BODY_BYTES", "MMA_KEYS",
           "TOKEN_ENV", "ApiHookClient", "AppGoneError", "HookError", "HookServer", "HookTimeoutError",
           "RequestError", "choose_token", "is_loopback_host"]

log = logging.getLogger(__name__)

TOKEN_ENV = "MMA_HOOK_TOKEN"           # chooses the token (test harnesses); else a random one per run
# URL-safe, so the token goes into `?token=` unescaped; 16+ characters so it cannot be guessed.
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{16,256}")
ACTION_HISTORY = 256                  # outcomes of recent actions kept for GET /api/gui/action

# Actions whose shape the server checks itself (anything else is forwarded to the App and
# always waited for, so an action the App does not know is answered 400 rather than 202).
KNOWN_ACTIONS = ("set_value", "click", "approve")

MMA_KEYS = ("mma_status", "active_tier", "active_track", "tickets", "mma_streams",
            "mma_tier_usage", "pending_approvals")
SESSION_PREFIXES = ("discussion", "comms", "session", "history", "ai_", "last_")
SESSION_KEYS = ("provider", "model", "project_dir", "errors", "stream_text")


def _unknown_field_message(name: str, exc: BaseException) -> str:
    detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(detail) if name in str(detail) else f"unknown field {name!r}: {detail}"


def choose_token(token: str | None = None) -> str:
    """`token` if given, else `MMA_HOOK_TOKEN`, else a fresh random one (256 bits).

    A chosen token must be 16-256 characters of A-Z a-z 0-9 . _ ~ - (ValueError otherwise)."""
    source = "token"
    if token is None:
        token, source = os.environ.get(TOKEN_ENV) or None, TOKEN_ENV
    if token is None:
        return secrets.token_urlsafe(32)
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        # the value itself is never echoed: it is a secret, even when a malformed one
        raise ValueError(f"{source} must be 16-256 characters of A-Z a-z 0-9 . _ ~ -")
    return token


class HookServer:
    """Loopback-only JSON hook API over `app` (see module docstring for the contract)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 action_timeout: float = DEFAULT_ACTION_TIMEOUT, max_body: int = MAX_BODY_BYTES,
                 token: str | None = None):
        if not isinstance(host, str) or not is_loopback_host(host):
            raise ValueError(f"hook server refuses host {host!r}: it binds loopback only "
                             f"(127.0.0.0/8, ::1 or localhost)")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"bad hook port {port!r}")
        self.app = app
        self.token = choose_token(token)
        self.host = host
        self.requested_port = port
        self.action_timeout = float(action_timeout)
        self.max_body = int(max_body)
        self.port: int | None = None
        self.bind_host: str | None = None
        self._httpd: HookHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._outcomes: collections.OrderedDict[int, dict] = collections.OrderedDict()
        self._recorded: dict[int, threading.Event] = {}
        self._counters: collections.Counter[str] = collections.Counter()
        self._started_at: float | None = None
        self.routes: dict[str, dict[str, Route]] = {
            "/status": {"GET": self._get_status},
            "/api/gui/state": {"GET": self._get_state},
            "/api/gui/value": {"GET": self._get_value},
            "/api/gui": {"POST": self._post_action},
            "/api/gui/action": {"GET": self._get_action},
            "/api/gui/mma_status": {"GET": self._get_mma_status},
            "/api/mma/approve": {"POST": self._post_approve},
            "/api/session": {"GET": self._get_session},
            "/api/performance": {"GET": self._get_performance},
            "/api/diagnostics": {"GET": self._get_diagnostics},
        }

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: where the server listens (no secret in it)."""
        if self.port is None:
            raise RuntimeError("hook server is not started")
        host = self.bind_host or self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>/?token=<t>`: what `ApiHookClient(url)` takes as it is."""
        return f"{self.base_url}/?{TOKEN_QUERY}={self.token}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> int:
        """Bind, serve in a daemon thread, log the URL; returns the bound port."""
        if self._httpd is not None:
            raise RuntimeError("hook server already started")
        if not is_loopback_host(self.host):      # re-checked: the name could resolve differently now
            raise ValueError(f"hook server refuses host {self.host!r}: loopback only")
        address: ipaddress.IPv4Address | ipaddress.IPv6Address
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            address = ipaddress.IPv4Address("127.0.0.1")    # "localhost": bind its IPv4 loopback
        bind_host = str(address)
        try:
            httpd = bind_server(self, address, self.requested_port)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind the hook API to {bind_host}:{self.requested_port}: "
                                     f"{exc.strerror} (port 0 picks a free one)") from exc
        self.bind_host = bind_host
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"hook-server-{self.port}", daemon=True)
        self._thread.start()
        # WARNING: an open control port deserves notice, and the line reaches stderr even when
        # logging is not configured (scripts read the URL from it; gui_2.main also prints it).
        log.warning("hook API listening on %s (test hooks enabled; loopback only, token required)",
                    self.base_url)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the listening socket. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("hook server thread did not stop within %ss", timeout)
        log.info("hook API on port %s stopped", self.port)

    def __enter__(self) -> HookServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- bookkeeping ------------------------------------------------------------------------
    def count(self, name: str) -> None:
        """Add one to the diagnostics counter `name` (called by the transport per request)."""
        with self._lock:
            self._counters[name] += 1

    def pending_action_count(self) -> int:
        with self._lock:
            return sum(1 for f in self._pending.values() if not f.done())

    def _record(self, action_id: int, future: concurrent.futures.Future, action: dict) -> None:
        """Done-callback: remember the outcome; a failed un-waited action is logged, not lost."""
        outcome: dict[str, Any] = {"action_id": action_id, "action": action.get("action"), "done": True}
        if future.cancelled():
            outcome.update(ok=False, error="cancelled")
        elif future.exception() is not None:
            exc = future.exception()
            outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            log.warning("hook action %d (%s) failed: %s", action_id, action.get("action"), exc)
        else:
            result = future.result()
            outcome.update(ok=True, result=result)
        # The frame published when the action resolved: a waited caller is answered only once a
        # later frame is published, so its next read sees the change (read-your-writes).
        outcome["resolved_at_frame"] = self._published_frame()
        with self._lock:
            self._pending.pop(action_id, None)
            self._outcomes[action_id] = outcome
            while len(self._outcomes) > ACTION_HISTORY:
                self._outcomes.popitem(last=False)
            recorded = self._recorded.pop(action_id, None)
        if recorded is not None:
            recorded.set()

    def _submit(self, action: dict) -> tuple[int, concurrent.futures.Future]:
        try:
            future = self.app.submit_action(action)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        action_id = next(self._ids)
        with self._lock:
            self._pending[action_id] = future
            self._recorded[action_id] = threading.Event()
        future.add_done_callback(lambda f: self._record(action_id, f, action))
        return action_id, future

    def _await(self, action_id: int, future: concurrent.futures.Future, action: dict,
               not_found_is_404: bool = False) -> dict:
        try:
            result = future.result(timeout=self.action_timeout)
        except concurrent.futures.TimeoutError:
            raise RequestError(504, f"action {action_id} ({action.get('action')}) was not applied "
                                    f"within {self.action_timeout:g}s; the GUI thread may be stalled "
                                    f"(it may still be applied later: GET /api/gui/action?id={action_id})"
                               ) from None
        except concurrent.futures.CancelledError:
            raise RequestError(409, f"action {action_id} was cancelled by the app") from None
        except (ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise RequestError(404 if not_found_is_404 else 400, str(msg)) from None
        # An app that resolves its futures only after publishing the frame that applied them
        # (gui_2.App) is read-your-writes already; for any other, wait for the next frame.
        published = (bool(getattr(self.app, "resolves_after_publish", False))
                     or self._wait_published(action_id, deadline=time.monotonic() + self.action_timeout))
        out = {**result} if isinstance(result, dict) else {"ok": True, "result": result}
        out["action_id"] = action_id
        if not published:
            out["published"] = False
        return out

    def _published_frame(self) -> int | None:
        try:
            frame = self.app.get_state_snapshot().get("frame_count")
        except Exception:                 # never let bookkeeping break the resolving thread
            log.exception("could not read frame_count from the app snapshot")
            return None
        return frame if isinstance(frame, int) else None

    def _wait_published(self, action_id: int, deadline: float) -> bool:
        """Wait (bounded) until a frame after the one where the action resolved is published."""
        with self._lock:
            recorded = self._recorded.get(action_id)
        # future.result() can return before the done-callback has recorded the outcome
        if recorded is not None and not recorded.wait(max(0.0, deadline - time.monotonic())):
            return False
        with self._lock:
            outcome = self._outcomes.get(action_id)
        resolved = outcome.get("resolved_at_frame") if outcome else None
        if resolved is None:
            return True                   # no frame counter to go by
        while True:
            frame = self._published_frame()
            if frame is None or frame > resolved:
                return True
            if time.monotonic() >= deadline:
                log.warning("action %d applied, but no new frame was published within %gs",
                            action_id, self.action_timeout)
                return False
            time.sleep(0.005)

    def _snapshot(self) -> dict:
        snap = self.app.get_state_snapshot()
        if not isinstance(snap, dict):
            raise TypeError(f"app.get_state_snapshot() returned {type(snap).__name__}, not dict")
        return snap

    # -- validation -------------------------------------------------------------------------
    def _check_field(self, name: Any) -> None:
        if not isinstance(name, str) or not name:
            raise RequestError(400, "'field' must be a non-empty string")
        try:
            self.app.get_field(name)
        except (KeyError, ValueError, AttributeError) as exc:
            raise RequestError(400, _unknown_field_message(name, exc)) from None

    def _validate_action(self, action: dict) -> None:
        kind = action.get("action")
        if not isinstance(kind, str) or not kind:
            raise RequestError(400, "body needs \"action\": one of " + ", ".join(KNOWN_ACTIONS)
                               + " (or another action the app supports)")
        if kind == "set_value":
            self._check_field(action.get("field"))
            if "value" not in action:
                raise RequestError(400, "set_value needs \"value\"")
        elif kind == "click":
            item = action.get("item")
            if not isinstance(item, str) or not item:
                raise RequestError(400, "click needs \"item\": a non-empty string")
            if "args" in action and not isinstance(action["args"], dict):
                raise RequestError(400, "click \"args\" must be an object")
        elif kind == "approve":
            self._validate_approval(action)

    @staticmethod
    def _validate_approval(body: dict) -> None:
        rid = body.get("request_id")
        if not isinstance(rid, str) or not rid:
            raise RequestError(400, "\"request_id\" must be a non-empty string")
        if not isinstance(body.get("approved"), bool):
            raise RequestError(400, "\"approved\" must be true or false")
        for key in ("prompt", "context_md"):
            if key in body and not isinstance(body[key], str):
                raise RequestError(400, f"\"{key}\" must be a string")
        if "args" in body and not isinstance(body["args"], dict):
            raise RequestError(400, "\"args\" must be an object")
        unknown = set(body) - {"action", "request_id", "approved", "prompt", "context_md", "args", "wait"}
        if unknown:
            raise RequestError(400, f"unknown approval field(s): {', '.join(sorted(unknown))}")

    # -- routes -------------------------------------------------------------------------------
    def _get_status(self, query: Query, body: Any) -> tuple[int, Any]:
        snap = self._snapshot()
        return 200, {"ok": True, "frame_count": snap.get("frame_count"), "fps": snap.get("fps"),
                     "provider": snap.get("provider")}

    def _get_state(self, query: Query, body: Any) -> tuple[int, Any]:
        return 200, self._snapshot()

    def _get_value(self, query: Query, body: Any) -> tuple[int, Any]:
        names = query.get("field")
        if not names or not names[0]:
            raise RequestError(400, "missing query parameter 'field' (GET /api/gui/value?field=NAME)")
        name = names[0]
        try:
            value = self.app.get_field(name)
        except (KeyError, ValueError, AttributeError) as exc:
            raise RequestError(400, _unknown_field_message(name, exc)) from None
        return 200, {"field": name, "value": value}

    def _post_action(self, query: Query, body: dict) -> tuple[int, Any]:
        wait_q = (query.get("wait") or [""])[0].lower() in ("1", "true", "yes")
        wait_b = body.pop("wait", False)
        if not isinstance(wait_b, bool):
            raise RequestError(400, "\"wait\" must be true or false")
        self._validate_action(body)
        known = body["action"] in KNOWN_ACTIONS
        action_id, future = self._submit(body)
        # An app that rejects an action at once (unknown field, item, ...) is answered at once,
        # even un-waited: a 202 for an action that can never apply would hide the mistake.
        if wait_q or wait_b or not known or future.done():
            return 200, self._await(action_id, future, body,
                                    not_found_is_404=body["action"] == "approve")
        return 202, {"queued": True, "action_id": action_id}

    def _get_action(self, query: Query, body: Any) -> tuple[int, Any]:
        raw = (query.get("id") or [""])[0]
        try:
            action_id = int(raw)
        except ValueError:
            raise RequestError(400, "query parameter 'id' must be an integer action id") from None
        with self._lock:
            if action_id in self._outcomes:
                return 200, self._outcomes[action_id]
            if action_id in self._pending:
                return 200, {"action_id": action_id, "done": False}
        raise RequestError(404, f"no record of action {action_id} (unknown or too old)")

    def _get_mma_status(self, query: Query, body: Any) -> tuple[int, Any]:
        snap = self._snapshot()
        return 200, {k: snap.get(k) for k in MMA_KEYS}

    def _post_approve(self, query: Query, body: dict) -> tuple[int, Any]:
        body.pop("wait", None)
        body.pop("action", None)
        self._validate_approval(body)
        action = {"action": "approve", **body}
        action_id, future = self._submit(action)
        return 200, self._await(action_id, future, action, not_found_is_404=True)

    def _get_session(self, query: Query, body: Any) -> tuple[int, Any]:
        snap = self._snapshot()
        out = {k: snap.get(k) for k in SESSION_KEYS if k in snap}
        for k, v in snap.items():
            if k.startswith(SESSION_PREFIXES):
                out[k] = v
        return 200, out

    def _get_performance(self, query: Query, body: Any) -> tuple[int, Any]:
        return 200, self.app.get_performance()

    def _get_diagnostics(self, query: Query, body: Any) -> tuple[int, Any]:
        with self._lock:
            counters = dict(self._counters)
        return 200, {
            "performance": self.app.get_performance(),
            "threads": sorted(t.name for t in threading.enumerate()),
            "pending_actions": self.pending_action_count(),
            "server": {"url": self.base_url, "uptime_s": round(time.monotonic() - (self._started_at or 0), 3),
                       "action_timeout_s": self.action_timeout, "max_body_bytes": self.max_body,
                       **counters},
            "routes": {path: sorted(m) for path, m in self.routes.items()},
        }
