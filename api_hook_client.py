"""`ApiHookClient`: the stdlib-only (urllib) client of the hook API in `api_hooks.py`.

Used by the visual simulations and tests; `api_hooks` re-exports every name here, so
`from api_hooks import ApiHookClient, HookError` keeps working.  Every call raises a
`HookError` subclass on failure: `AppGoneError` (connection refused/reset/closed),
`HookTimeoutError` (no answer in time), else `HookError` with the HTTP status and
the server's `error` text.  `wait_for` / `wait_for_approval` are bounded polling
helpers for test drivers; the app itself never polls.

The server answers only requests that carry its token: `ApiHookClient(url)` takes the
URL of the `MMA_HOOKS http://127.0.0.1:<port>/?token=<t>` start-up line as it is, and
sends the token as `Authorization: token <t>` (never in the request URL, so it stays
out of request logs).  An explicit `token=` argument wins over the URL's; with neither,
`MMA_HOOK_TOKEN` from the environment is used.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("api_hooks")

DEFAULT_PORT = 8999
DEFAULT_ACTION_TIMEOUT = 10.0         # seconds a waited POST may take (the server's default timeout)
TOKEN_ENV = "MMA_HOOK_TOKEN"


class HookError(RuntimeError):
    """The hook API answered an error (`status` is the HTTP status, `message` the server's text)."""

    def __init__(self, message: str, status: int | None = None, payload: Any = None):
        super().__init__(f"HTTP {status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.payload = payload


class AppGoneError(HookError):
    """The app is not there: connection refused, reset or closed before an answer."""


class HookTimeoutError(HookError):
    """The server did not answer within the client's timeout."""


class ApiHookClient:
    """Stdlib (urllib) client for `HookServer`. Every call raises `HookError` subclasses on failure."""

    def __init__(self, url: str = f"http://127.0.0.1:{DEFAULT_PORT}", timeout: float = 5.0, *,
                 token: str | None = None):
        split = urllib.parse.urlsplit(url)
        from_url = urllib.parse.parse_qs(split.query).get("token")
        self.base_url = urllib.parse.urlunsplit((split.scheme, split.netloc, split.path, "", "")).rstrip("/")
        self.token = token or (from_url[0] if from_url else None) or os.environ.get(TOKEN_ENV) or None
        self.timeout = timeout

    # -- transport ------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, query: dict | None = None,
                 timeout: float | None = None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw.decode("utf-8"))
                message = payload.get("error", raw.decode("utf-8", "replace")) if isinstance(payload, dict) \
                    else str(payload)
            except (UnicodeDecodeError, json.JSONDecodeError):
                payload, message = None, raw.decode("utf-8", "replace") or exc.reason
            raise HookError(str(message), status=exc.code, payload=payload) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise HookTimeoutError(f"{method} {path}: no answer within {timeout or self.timeout}s") from exc
            if isinstance(reason, (ConnectionError, OSError)):
                raise AppGoneError(f"{method} {url}: app not reachable ({reason})") from exc
            raise HookError(f"{method} {url}: {reason}") from exc
        except TimeoutError as exc:
            raise HookTimeoutError(f"{method} {path}: no answer within {timeout or self.timeout}s") from exc
        except (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
            raise AppGoneError(f"{method} {url}: connection lost ({exc})") from exc
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HookError(f"{method} {path}: answer is not JSON: {raw[:200]!r}") from exc

    def _get(self, path: str, **query: Any) -> Any:
        return self._request("GET", path, query=query or None)

    def _post(self, path: str, body: dict, wait: bool = False) -> Any:
        # A waited action may legitimately take the server's whole action timeout.
        timeout = max(self.timeout, DEFAULT_ACTION_TIMEOUT + 5) if wait else None
        return self._request("POST", path, body=body, query={"wait": 1} if wait else None,
                             timeout=timeout)

    # -- API ------------------------------------------------------------------------------------
    def wait_for_server(self, timeout: float = 10) -> bool:
        """Poll GET /status until it answers ok; False if it did not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if (self.get_status() or {}).get("ok"):
                    return True
            except HookError as exc:
                log.debug("waiting for hook server: %s", exc)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def get_status(self) -> dict:
        return self._get("/status")

    def get_state(self) -> dict:
        return self._get("/api/gui/state")

    def get_value(self, field: str) -> Any:
        return self._get("/api/gui/value", field=field)["value"]

    def post_action(self, action: dict, wait: bool = True) -> dict:
        """Send any action dict (e.g. an app-specific one such as "screenshot")."""
        return self._post("/api/gui", dict(action), wait=wait)

    def get_action(self, action_id: int) -> dict:
        return self._get("/api/gui/action", id=action_id)

    def set_value(self, field: str, value: Any, wait: bool = True) -> dict:
        return self.post_action({"action": "set_value", "field": field, "value": value}, wait=wait)

    def click(self, item: str, wait: bool = True, **args: Any) -> dict:
        action: dict[str, Any] = {"action": "click", "item": item}
        if args:
            action["args"] = args
        return self.post_action(action, wait=wait)

    def get_mma_status(self) -> dict:
        return self._get("/api/gui/mma_status")

    def get_session(self) -> dict:
        return self._get("/api/session")

    def get_performance(self) -> dict:
        return self._get("/api/performance")

    def get_diagnostics(self) -> dict:
        return self._get("/api/diagnostics")

    def approve(self, request_id: str, approved: bool = True, **edits: Any) -> dict:
        """Answer a pending approval; `edits` may be prompt=, context_md=, args=."""
        return self._post("/api/mma/approve", {"request_id": request_id, "approved": approved, **edits},
                          wait=True)

    # -- polling helpers (test-driver side; the app itself never polls) ----------------------
    def wait_for(self, predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
                 message: str = "condition") -> Any:
        """Call `predicate()` until it returns something truthy (returned); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
            time.sleep(interval)

    def wait_for_approval(self, kind: str | None = None, timeout: float = 30.0,
                          ticket_id: str | None = None, interval: float = 0.05) -> dict:
        """Wait until a pending approval (optionally of `kind` / for `ticket_id`) is listed; return it."""
        def find() -> dict | None:
            for req in self.get_mma_status().get("pending_approvals") or []:
                if kind is not None and req.get("kind") != kind:
                    continue
                if ticket_id is not None and req.get("ticket_id") != ticket_id:
                    continue
                return req
            return None
        what = "a pending approval" + (f" of kind {kind!r}" if kind else "") + \
               (f" for ticket {ticket_id!r}" if ticket_id else "")
        return self.wait_for(find, timeout, interval, message=what)
