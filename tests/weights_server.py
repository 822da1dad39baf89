"""A loopback HTTP server that plays the authors' sites and a lab mirror for the released-weights tests.

It serves the ``../shared/weights`` files, and on request the faults a
download meets in the wild: a 404, an HTML page where the file should be, a
transfer cut short (``Content-Length`` larger than what is sent, then the
connection closes) and a transfer that stalls.  :func:`point_registry_at`
writes a copy of the registry whose authors' URLs lead to it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import require_shared

HTML_404 = b"<!DOCTYPE html><html><head><title>Page not found</title></head><body>Sorry.</body></html>\n"


@dataclass
class Answer:
    body: bytes | Path
    status: int = 200
    content_type: str = "application/octet-stream"
    length: int | None = None  # Content-Length sent; None = the body's
    stall_after: int | None = None  # send this many bytes, then hang until the server closes

    def data(self) -> bytes:
        return self.body.read_bytes() if isinstance(self.body, Path) else self.body


class WeightsServer:
    """``serve(path, Answer(...))``; ``hits`` lists the paths asked for, in order; ``url`` is the root."""

    def __init__(self):
        self.routes: dict[str, Answer] = {}
        self.hits: list[str] = []
        self.release = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, answer: Answer) -> str:
        self.routes[path] = answer
        return self.url + path

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                server.hits.append(self.path)
                answer = server.routes.get(self.path)
                if answer is None:
                    answer = Answer(HTML_404, status=404, content_type="text/html")
                data = answer.data()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(answer.length if answer.length is not None else len(data)))
                self.end_headers()
                if answer.stall_after is not None:
                    self.wfile.write(data[:answer.stall_after])
                    self.wfile.flush()
                    server.release.wait(120)
                    return
                self.wfile.write(data)

            def log_message(self, *args):  # keep the test output clean
                pass

        return Handler


def shared_weights() -> dict[str, Path]:
    """SHA-256 -> file, for every weights file in ``../shared/weights`` (skips without it; cached, but every
    call checks for the folder, so that each caller is known to need it)."""
    return _hash_weights(require_shared("weights"))


@functools.lru_cache(maxsize=1)
def _hash_weights(root: Path) -> dict[str, Path]:
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "SOURCES.md"}


def upstream_path(entry: dict) -> str:
    return f"/upstream/{entry['name']}/{entry['file']}"


def point_registry_at(server: WeightsServer, folder: Path) -> Path:
    """A copy of the registry in ``folder`` whose authors' URLs are ``server``'s, which serves the shared files."""
    from models import weights

    data = json.loads(weights.REGISTRY.read_text(encoding="utf-8"))
    files = shared_weights()
    for entry in data["weights"]:
        if entry.get("sha256"):
            entry["urls"] = [server.url + upstream_path(entry)]
            if entry["sha256"] in files:
                server.serve(upstream_path(entry), Answer(files[entry["sha256"]]))
    path = folder / "weights.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
