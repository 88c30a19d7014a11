"""A webhook receiver on 127.0.0.1 for alert tests: answers the given HTTP statuses in turn (then 200) and
keeps every request's path and JSON body."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    statuses: list[int]
    requests: list[tuple[str, dict]] = field(default_factory=list)
    url: str = ""


@contextmanager
def webhook(statuses: Sequence[int] = ()) -> Iterator[Received]:
    rec = Received(list(statuses))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.requests.append((self.path, json.loads(body)))
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-secret"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
