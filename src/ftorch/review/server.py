"""The review page's web server: the standard library's threading HTTP server on 127.0.0.1 only, a random
token in the URL that every request must carry (403 otherwise), static files shipped inside the package (no
CDN: it works offline), and a small JSON API over a DataReview or an EvalReview."""

from __future__ import annotations

import hmac
import json
import mimetypes
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
STATIC = ("style.css", "common.js", "data.js", "eval.js")
MAX_BODY = 8 << 20


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, review, port: int = 0):
        self.review = review
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()  # one decision at a time: the review file is appended in order
        super().__init__((HOST, port), Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/?token={self.token}"


def _asset(name: str) -> bytes:
    return resources.files("ftorch.review").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
        pass

    # ---- plumbing ----

    def _authorized(self, query: dict) -> bool:
        given = (query.get("token") or [""])[0] or self.headers.get("X-Review-Token", "")
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._authorized(query):
            self._send(403, b"forbidden: open the URL that `ftorch review` printed (it carries the token)\n",
                       "text/plain; charset=utf-8")
            return
        try:
            body = self._body() if method == "POST" else {}
            self._dispatch(method, parts.path, {k: v[0] for k, v in query.items()}, body)
        except (LookupError, ValueError, TypeError, AttributeError) as exc:
            self._json(400, {"ok": False, "error": str(exc)})
        except OSError as exc:  # the disk is full, the file was made read-only...: the page says so
            self._json(500, {"ok": False, "error": f"not saved: {exc}"})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request too large")
        data = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    # ---- the API ----

    def _dispatch(self, method: str, path: str, query: dict, body: dict) -> None:
        review = self.server.review
        token = self.server.token
        if method == "GET" and path in ("/", "/index.html"):
            page = review.kind
            html = _asset(f"{page}.html").decode().replace("{{token}}", token)
            self._send(200, html.encode(), "text/html; charset=utf-8")
        elif method == "GET" and path.startswith("/static/") and path[8:] in STATIC:
            name = path[8:]
            self._send(200, _asset(name), mimetypes.guess_type(name)[0] or "application/octet-stream")
        elif method == "GET" and path == "/api/meta":
            self._json(200, review.meta())
        elif method == "GET" and path == "/api/items":
            start, size = int(query.get("start", 0)), int(query.get("size", 50))
            if review.kind == "data":
                around = int(query["around"]) if query.get("around") else None
                page = review.page(start, size, around, code=query.get("code", ""),
                                   decision=query.get("decision", ""), query=query.get("q", ""))
            else:
                page = review.page(query.get("section", "task"), query.get("filter", ""), start, size)
            self._json(200, page)
        elif method == "POST" and path == "/api/validate":
            self._json(200, review.index.validate(int(body["line"]), body.get("messages")))
        elif method == "POST" and path == "/api/decide":
            with self.server.lock:
                result = review.decide(int(body["line"]), str(body["hash"]), str(body["action"]),
                                       body.get("messages"), str(body.get("note") or ""))
            self._json(200, result)
        elif method == "POST" and path == "/api/mark":
            with self.server.lock:
                result = review.mark(str(body["section"]), str(body["item"]), str(body["system"]),
                                     str(body["mark"]), str(body.get("note") or ""))
            self._json(200, result)
        elif method == "POST" and path == "/api/negative":
            with self.server.lock:
                self._json(200, review.send_negative(str(body["item"]), str(body.get("note") or "")))
        else:
            self._json(404, {"ok": False, "error": f"no such page: {method} {path}"})
