"""The service's local HTTP API (127.0.0.1 by default): ``GET /status`` (JSON: positions, open orders, equity,
last signal, risk state), ``POST /resume`` (clears a halt), ``GET /metrics`` (Prometheus text) and ``GET /health``
(200 when healthy, 503 otherwise, JSON detail). A stdlib ``ThreadingHTTPServer`` in a daemon thread."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from marketsynth.trading.service.loop import TradingService


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        service = self.server.service
        if self.path == "/status":
            return self._json(200, service.snapshot or {"starting": True})
        if self.path == "/metrics" and service.metrics is not None:
            body, content_type = service.metrics.render()
            return self._send(200, body, content_type)
        if self.path == "/health" and service.metrics is not None:
            ok, detail = service.metrics.health(time.time())
            return self._json(200 if ok else 503, detail)
        self._json(404, {"error": f"no such path {self.path}; try /status, /metrics or /health"})

    def do_POST(self) -> None:
        if self.path != "/resume":
            return self._json(404, {"error": f"no such path {self.path}; POST /resume"})
        self.server.service.request_resume()
        self._json(200, {"resume": "requested; the halt is cleared at the next loop iteration"})

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload, default=str).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    service: TradingService


class ServiceAPI:
    def __init__(self, service: TradingService, host: str = "127.0.0.1", port: int = 0):
        self.server = _Server((host, port), _Handler)
        self.server.service = service
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    def start(self) -> ServiceAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
