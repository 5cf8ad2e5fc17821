"""Who may talk to the server, checked before any route runs (an ASGI middleware).

A server on a developer's laptop is reachable from every web page the developer opens. Two attacks
follow, both answered as Ollama answers them: a page on evil.example whose name re-resolves to
127.0.0.1 (DNS rebinding: the browser then sends `Host: evil.example`), and a page that posts to
http://127.0.0.1:11434 directly (`Origin: https://evil.example`; a `text/plain` POST is sent without
a CORS preflight). So: on a loopback bind only loopback Host names are answered; an Origin must be
this server's own or one listed with --origins (their preflights are answered); a POST must declare
JSON; and with --api-key every request must carry it as a Bearer token.
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers

from sophia.serve.errors import Forbidden, ServeError, Unauthorized, UnsupportedMediaType
from sophia.serve.shared import error_response

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header without its port: `[::1]:8080` → `::1`, `localhost:11434` → `localhost`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: Host, Origin, API key and content type, in that order."""

    def __init__(self, app: Any, *, loopback: bool, origins: Sequence[str] = (), api_key: str | None = None) -> None:
        self.app = app
        self.loopback = loopback
        self.origins = [o.rstrip("/") for o in origins]
        self.api_key = api_key

    def origin_allowed(self, origin: str, host: str) -> bool:
        if origin in (f"http://{host}", f"https://{host}"):  # same origin: a page this server itself served
            return True
        return any(fnmatch.fnmatchcase(origin, o) if "*" in o else origin == o for o in self.origins)

    def problem(self, scope: dict[str, Any]) -> ServeError | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.loopback and host and host_name(host) not in LOOPBACK_NAMES:
            return Forbidden(f"Host '{host}' is not answered: this server is bound to loopback and answers only "
                             "127.0.0.1, localhost and [::1] (any port)")
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, host):
            return Forbidden(f"Origin '{origin}' is not allowed; to let a web page at that origin use this "
                             f"server, start it with --origins {origin}")
        method = scope["method"]
        if method == "OPTIONS":  # a preflight never carries credentials; CORS answers it
            return None
        if self.api_key is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                return Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>' (--api-key)")
        if method == "POST":
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                return UnsupportedMediaType(f"Content-Type must be application/json, got '{media or 'none'}'")
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem is not None:
                headers = {"WWW-Authenticate": "Bearer"} if isinstance(problem, Unauthorized) else {}
                problem.headers.update(headers)
                await error_response(scope["path"], problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
