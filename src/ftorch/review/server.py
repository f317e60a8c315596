"""The review page's web server: the standard library's threading HTTP server on 127.0.0.1 only, a random
token in the URL that every request must carry (403 otherwise), static files shipped inside the package (no
CDN: it works offline), and a small JSON API over a DataReview or an EvalReview.

Every request gets an answer, never a dropped connection or a traceback on the console: a body that is too large,
not JSON, nested too deeply, holds NaN/Infinity or a field of the wrong type is a 400 with a JSON message; a
decision the disk did not take is a 507 (full) or 500, after store.py rolled it back. The listen queue is long
enough for a burst of posts, and decisions are appended one at a time."""

from __future__ import annotations

import errno
import hmac
import json
import mimetypes
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import FtorchError
from .store import NotSaved

HOST = "127.0.0.1"
STATIC = ("style.css", "common.js", "data.js", "eval.js")
MAX_BODY = 8 << 20
MAX_DEPTH = 32  # an edited conversation nests about 6 deep (messages, content parts, tool calls)
FULL = (errno.ENOSPC, errno.EDQUOT)


class Refused(ValueError):
    """A request the API cannot take: its HTTP status and the message the page shows."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _no_constant(name: str) -> Any:
    raise Refused(400, f"{name} is not a number the review accepts (JSON has no NaN or Infinity)")


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests lists/objects more than `limit` deep (iterative: no recursion on hostile input)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
                     if isinstance(child, dict | list))
    return False


def parse_body(raw: bytes) -> dict:
    """A request body as a JSON object, or Refused(400) saying what is wrong with it."""
    try:
        data = json.loads(raw or b"{}", parse_constant=_no_constant)
    except RecursionError:
        raise Refused(400, f"the JSON is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Refused(400, "expected a JSON object")
    if _depth_over(data, MAX_DEPTH):
        raise Refused(400, f"the JSON is nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def field_int(body: dict, key: str, default: int | None = None) -> int:
    """body[key] as a whole number (a JSON number or, from a query string, digits), or Refused(400)."""
    value = _field(body, key) if default is None else body.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise Refused(400, f"{key} must be a whole number, not {json.dumps(value)[:40]}")
    return value


def field_str(body: dict, key: str, default: str | None = None) -> str:
    """body[key] as text, or Refused(400); with a default, a missing or null field gives it."""
    value = _field(body, key) if default is None else body.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise Refused(400, f"{key} must be text, not {json.dumps(value)[:40]}")
    return value


def _field(body: dict, key: str) -> Any:
    if key not in body:
        raise Refused(400, f"missing field {key!r}")
    return body[key]


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog (the kernel caps it at somaxconn): a burst of posts waits here
    # instead of being reset, as with the default 5

    def __init__(self, review, port: int = 0):
        self.review = review
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()  # one decision at a time: the review file is appended in order
        super().__init__((HOST, port), Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/?token={self.token}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is not an error; anything else is one line, not a traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | TimeoutError):
            print(f"review server: {type(exc).__name__}: {exc}", file=sys.stderr)


def _asset(name: str) -> bytes:
    return resources.files("ftorch.review").joinpath("static", name).read_bytes()


def _grading(review: Any) -> Any:
    """The evaluation review's grading view, or Refused(404) saying why there is none."""
    grading = getattr(review, "grading", None)
    if grading is None:
        raise Refused(404, getattr(review, "not_gradable", "") or "grading is part of an evaluation's review "
                      "(ftorch review RUN)")
    return grading


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
        except ConnectionError:
            self.close_connection = True  # the page went away: nothing to answer
        except Refused as exc:
            self._json(exc.status, {"ok": False, "error": str(exc)})
        except (LookupError, ValueError, TypeError, AttributeError, ArithmeticError) as exc:
            self._json(400, {"ok": False, "error": str(exc) or type(exc).__name__})
        except NotSaved as exc:  # rolled back: the page says so and the person decides again
            self._json(507 if exc.errno in FULL else 500, {"ok": False, "error": str(exc)})
        except OSError as exc:  # the disk is full, the file was made read-only...: the page says so
            self._json(507 if exc.errno in FULL else 500, {"ok": False, "error": f"not saved: {exc}"})
        except FtorchError as exc:  # a symlink planted where the review file was...
            self._json(500, {"ok": False, "error": f"not saved: {exc}"})
        except Exception as exc:  # a bug: still an answer the page can show, and one line on the console
            self.server.handle_error(self.request, self.client_address)
            self._json(500, {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the body is left unread: this connection cannot carry another request
            raise Refused(413 if length > MAX_BODY else 400, f"the body must be 0 to {MAX_BODY} bytes with its "
                          "Content-Length given")
        return parse_body(self.rfile.read(length))

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
            start, size = field_int(query, "start", 0), field_int(query, "size", 50)
            if review.kind == "data":
                around = field_int(query, "around") if query.get("around") else None
                page = review.page(start, size, around, code=query.get("code", ""),
                                   decision=query.get("decision", ""), query=query.get("q", ""))
            else:
                page = review.page(query.get("section", "task"), query.get("filter", ""), start, size)
            self._json(200, page)
        elif method == "GET" and path == "/api/grading":
            self._json(200, _grading(review).items())
        elif method == "POST" and path == "/api/grade":
            item, choice = field_str(body, "item"), field_str(body, "choice")
            with self.server.lock:
                result = _grading(review).grade(item, choice)
            self._json(200, result)
        elif method == "POST" and path == "/api/validate":
            self._json(200, review.index.validate(field_int(body, "line"), body.get("messages")))
        elif method == "POST" and path == "/api/decide":
            line, digest, action = field_int(body, "line"), field_str(body, "hash"), field_str(body, "action")
            with self.server.lock:
                result = review.decide(line, digest, action, body.get("messages"), field_str(body, "note", ""))
            self._json(200, result)
        elif method == "POST" and path == "/api/mark":
            args = [field_str(body, key) for key in ("section", "item", "system", "mark")]
            with self.server.lock:
                result = review.mark(*args, field_str(body, "note", ""))
            self._json(200, result)
        elif method == "POST" and path == "/api/negative":
            item, note = field_str(body, "item"), field_str(body, "note", "")
            with self.server.lock:
                result = review.send_negative(item, note)
            self._json(200, result)
        else:
            self._json(404, {"ok": False, "error": f"no such page: {method} {path}"})
