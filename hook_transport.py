"""HTTP transport of the hook API: who may ask, JSON framing, request parsing, error answers.

`api_hooks.HookServer` owns the routes and the action bookkeeping; this module only turns
HTTP requests into `route(query, body) -> (status, payload)` calls and payloads back into
JSON answers.  Everything here is about the wire:

- `is_loopback_host` decides which hosts the server may bind (127.0.0.0/8, ::1, or a name
  resolving only to those);
- every request must come from the server's owner (`HookRequestHandler._authorize`, before any
  route runs): a `Host` header naming a loopback address (or `localhost`) and the bound port,
  so a DNS-rebinding page cannot reach it under its own name; an `Origin`, when present, that
  is loopback too; and the run's token, as `Authorization: token <t>` or `?token=<t>`, compared
  in constant time.  POST bodies must be `Content-Type: application/json`, which a browser
  cannot send cross-origin without a CORS preflight the server never grants.  Refusals are 403
  (415 for the content type) and reach no route, so the app's state is unchanged;
- `HookRequestHandler` reads a bounded JSON object body, dispatches by path and method, and
  answers every failure as `{"error": "..."}` with a 4xx/5xx status (a crash in a route is a
  500, never a dead server thread);
- `bind_server` creates the threaded HTTP server for an IPv4 or IPv6 loopback address.
"""
from __future__ import annotations

import dataclasses
import hmac
import http.server
import ipaddress
import json
import logging
import math
import re
import socket
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

# One logger for the whole hook API (server, transport and client), so one level switch shows
# or hides every request line (docs/guide_tools.md, "Conventions").
log = logging.getLogger("api_hooks")

MAX_BODY_BYTES = 1024 * 1024          # 1 MiB
TOKEN_QUERY = "token"                 # ?token=<t>, the form the start-up URL carries
TOKEN_SCHEME = "token"                # Authorization: token <t>  (Jupyter's form)
JSON_TYPE = "application/json"
_PORT_RE = re.compile(r"[0-9]{1,5}")
_DIGITS_RE = re.compile(r"[0-9]+")
_TOKEN_IN_PATH_RE = re.compile(r"(?i)([?&]token=)[^&#\s]*")

Query = dict[str, list[str]]
Route = Callable[[Query, Any], tuple[int, Any]]
"""A route gets the parsed query string and the JSON body (None for GET) and returns (status, payload)."""


class HookEndpoint(Protocol):
    """What the transport needs from the server it serves (`api_hooks.HookServer`)."""

    routes: dict[str, dict[str, Route]]
    max_body: int
    token: str                            # the run's secret; every request must carry it
    port: int | None                      # the bound port, which the Host header must name

    def count(self, name: str) -> None:
        """Add one to the diagnostics counter `name`."""


class RequestError(Exception):
    """Raised inside a route to answer `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def is_loopback_host(host: str) -> bool:
    """True when `host` is 127.0.0.0/8 or ::1, or a name that resolves only to those."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass                              # not a literal address: resolve the name below
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        log.warning("hook host %r does not resolve: %s", host, exc)
        return False
    addrs = {str(info[4][0]) for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addrs)


# --------------------------------------------------------------------------------------
# who may ask: Host, Origin, token, content type
# --------------------------------------------------------------------------------------
def _is_loopback_name(host: str) -> bool:
    """A literal loopback address or `localhost`; names are never resolved here (a rebinding
    attacker controls what their name resolves to, which is the attack)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header_ok(value: str, port: int | None) -> bool:
    """True when a `Host` header names a loopback address or `localhost` with `port`."""
    value = value.strip()
    if value.startswith("["):             # [::1]:port
        end = value.find("]")
        if end < 0:
            return False
        host, rest = value[1:end], value[end + 1:]
    else:
        host, sep, tail = value.partition(":")
        rest = sep + tail
    if rest == "":
        given = 80                        # no port: the scheme's default
    elif rest.startswith(":") and _PORT_RE.fullmatch(rest[1:]):
        given = int(rest[1:])
    else:
        return False
    return bool(host) and given == port and _is_loopback_name(host)


def origin_ok(value: str) -> bool:
    """True when an `Origin` header is an http(s) origin on a loopback address or `localhost`."""
    try:
        split = urllib.parse.urlsplit(value.strip())
        split.port                        # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return False
    return (split.scheme in ("http", "https") and split.path in ("", "/") and not split.query
            and split.hostname is not None and _is_loopback_name(split.hostname))


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison (the time does not depend on how much of a guess is right)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def is_json_content_type(value: str | None) -> bool:
    return value is not None and value.split(";", 1)[0].strip().lower() == JSON_TYPE


def redact_token(text: str) -> str:
    """A request target with its `token=` value hidden, for logs."""
    return _TOKEN_IN_PATH_RE.sub(r"\1***", text)


# --------------------------------------------------------------------------------------
# JSON encoding
# --------------------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(obj)


def _finite(obj: Any) -> Any:
    """Replace NaN / infinities (not JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Strict JSON bytes of `obj`: dataclasses, sets and bytes converted, NaN/inf as null."""
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False).encode("utf-8")
    except ValueError:                    # e.g. fps = inf before the first frame: strict JSON anyway
        return json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))),
                          allow_nan=False).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# --------------------------------------------------------------------------------------
# server and handler
# --------------------------------------------------------------------------------------
class HookHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hook: HookEndpoint

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver calls this from inside its `except` block, so sys.exc_info() is the
        # socket-level failure (the handler already answers its own exceptions).
        log.warning("hook server: error while serving %s", client_address, exc_info=sys.exc_info())


class HookHTTPServer6(HookHTTPServer):
    address_family = socket.AF_INET6


def bind_server(endpoint: HookEndpoint, host: ipaddress.IPv4Address | ipaddress.IPv6Address,
                port: int) -> HookHTTPServer:
    """Bind a (not yet serving) server for `endpoint` on the loopback address `host`."""
    cls = HookHTTPServer6 if host.version == 6 else HookHTTPServer
    httpd = cls((str(host), port), HookRequestHandler)
    httpd.hook = endpoint
    return httpd


class HookRequestHandler(http.server.BaseHTTPRequestHandler):
    server: HookHTTPServer
    server_version = "MMADeskHooks/1.0"
    protocol_version = "HTTP/1.0"         # one request per connection: simple and robust
    timeout = 15                          # seconds a silent client may hold a handler thread
    error_content_type = "application/json"

    # -- plumbing ---------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:   # `format` is the stdlib's parameter name
        log.debug("%s - %s", self.address_string(), redact_token(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Used by the stdlib for malformed request lines, unsupported methods, ...: answer JSON."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"    # garbage request line: still answer with headers
        text = message or self.responses.get(code, ("error",))[0]
        self._send_json(code, {"error": text})

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _dispatch(self) -> None:
        hook = self.server.hook
        hook.count("requests")
        self._body_read = False
        try:
            split = urllib.parse.urlsplit(self.path)   # the stdlib already folded a leading "//"
            path = split.path.rstrip("/") or "/"
            query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
            self._authorize(hook, query)
            methods = hook.routes.get(path)
            if methods is None:
                raise RequestError(404, f"unknown route {path!r}; see GET /api/diagnostics "
                                        f"for the route list")
            method = "GET" if self.command == "HEAD" else self.command
            handler = methods.get(method)
            if handler is None:
                allow = ", ".join(sorted(methods))
                raise RequestError(405, f"method {self.command} not allowed on {path}; use {allow}",
                                   {"Allow": allow})
            if method == "POST" and not is_json_content_type(self.headers.get("Content-Type")):
                raise RequestError(415, f"POST bodies must be Content-Type: {JSON_TYPE}, "
                                        f"got {self.headers.get('Content-Type')!r}")
            body = self._read_json() if method == "POST" else None
            status, payload = handler(query, body)
            self._send_json(status, payload)
        except RequestError as exc:
            hook.count("client_errors" if exc.status < 500 else "server_errors")
            if exc.status in (403, 415):
                hook.count("refused")
            log.debug("hook %s %s -> %d %s", self.command, redact_token(self.path), exc.status, exc.message)
            if exc.status in (411, 413):
                self.close_connection = True
            self._send_json(exc.status, {"error": exc.message}, exc.headers)
            if exc.status == 413 or (exc.status in (403, 415) and self._body_unread()):
                self._drain_after_reject()
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.debug("hook client went away during %s %s: %s", self.command, redact_token(self.path), exc)
        except Exception as exc:          # a handler bug must never kill the server
            hook.count("server_errors")
            log.exception("hook handler crashed on %s %s", self.command, redact_token(self.path))
            try:
                self._send_json(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})
            except OSError as send_exc:
                log.debug("could not send the 500 answer: %s", send_exc)

    def _authorize(self, hook: HookEndpoint, query: Query) -> None:
        """Refuse (403) a request that is not from the server's owner; see the module docstring.

        The `token` query parameter is removed from `query`, so no route ever sees it."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or not host_header_ok(hosts[0], hook.port):
            raise RequestError(403, f"Host {', '.join(hosts) or '(none)'} is not this server: it answers only "
                                    f"127.0.0.1:{hook.port}, [::1]:{hook.port} or localhost:{hook.port}")
        origins = self.headers.get_all("Origin") or []
        if len(origins) > 1 or (origins and not origin_ok(origins[0])):
            raise RequestError(403, f"Origin {', '.join(origins)} is not loopback; the hook API answers "
                                    f"no web page")
        given = self._request_token(query)
        if given is None:
            raise RequestError(403, "missing token: send 'Authorization: token <t>' or ?token=<t> "
                                    "(the MMA_HOOKS start-up line has the URL with the token)")
        if not token_matches(given, hook.token):
            raise RequestError(403, "wrong token")

    def _request_token(self, query: Query) -> str | None:
        """The token of the `Authorization` header, else of `?token=`; None when neither is there."""
        from_query = query.pop(TOKEN_QUERY, [])
        headers = self.headers.get_all("Authorization") or []
        if len(headers) > 1 or len(from_query) > 1:
            raise RequestError(403, "more than one token in the request")
        if headers:
            scheme, _, value = headers[0].strip().partition(" ")
            if scheme.lower() != TOKEN_SCHEME or not value.strip():
                raise RequestError(403, "Authorization must be 'token <t>'")
            return value.strip()
        return from_query[0] if from_query else None

    def _body_unread(self) -> bool:
        """A request refused before its body was read (the client may still be sending it)."""
        if self._body_read:
            return False
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return True
        length = (self.headers.get("Content-Length") or "").strip()
        return _DIGITS_RE.fullmatch(length) is not None and int(length) > 0

    def _read_json(self) -> dict[str, Any]:
        self._body_read = True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError(411, "chunked bodies are not supported; send Content-Length")
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            raise RequestError(411, "POST needs a Content-Length header")
        try:
            length = int(raw_len)
        except ValueError:
            raise RequestError(400, f"bad Content-Length {raw_len!r}") from None
        if length < 0:
            raise RequestError(400, f"bad Content-Length {raw_len!r}")
        limit = self.server.hook.max_body
        if length > limit:
            raise RequestError(413, f"body of {length} bytes is over the {limit}-byte limit")
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise RequestError(400, f"body ended after {len(data)} of {length} bytes")
        if not data.strip():
            raise RequestError(400, "empty body; send a JSON object")
        try:
            body = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"body is not UTF-8: {exc}") from None
        except ValueError as exc:         # JSONDecodeError, NaN / Infinity
            raise RequestError(400, f"malformed JSON: {exc}") from None
        except RecursionError:
            raise RequestError(400, "malformed JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"body must be a JSON object, got {type(body).__name__}")
        return body

    def _drain_after_reject(self) -> None:
        """After a 413, let the client finish sending so it can read the answer (no RST race).

        Reads and discards at most the body limit, with a short timeout, then closes.
        """
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(2.0)
            left = self.server.hook.max_body
            while left > 0:
                chunk = self.connection.recv(min(65536, left))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError as exc:
            log.debug("drain after 413 ended: %s", exc)

    _body_read = False
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch
