"""A stand-in ``llama-server`` for the managed-mode unit tests (the real one takes 10 min to build).

It takes llama-server's command line, answers ``/health`` like the real server (503
``Loading model`` for ``FAKE_LOADING_SECONDS``, then 200), serves the recorded ``/props``,
``/slots`` and chat bodies, writes its argv to ``FAKE_ARGV_FILE`` and exits on SIGTERM.
``FAKE_IGNORE_TERM=1`` makes it ignore SIGTERM (to test the SIGKILL escalation);
``FAKE_EXIT_CODE`` makes it exit at once with that code (a start-up failure).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).parent / "data"


def main(argv: list[str]) -> None:
    if os.environ.get("FAKE_EXIT_CODE"):
        print("error: failed to load model", flush=True)
        sys.exit(int(os.environ["FAKE_EXIT_CODE"]))
    port = int(argv[argv.index("--port") + 1])
    host = argv[argv.index("--host") + 1]
    if os.environ.get("FAKE_ARGV_FILE"):
        Path(os.environ["FAKE_ARGV_FILE"]).write_text(json.dumps(argv))
    if os.environ.get("FAKE_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    loading_until = time.monotonic() + float(os.environ.get("FAKE_LOADING_SECONDS", "0.3"))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if time.monotonic() < loading_until:
                return self._send(503, (DATA / "health_loading.json").read_bytes())
            files = {"/health": "health_ok.json", "/props": "props.json", "/slots": "slots.json"}
            name = files.get(self.path)
            if name is None:
                return self._send(404, b'{"error":{"code":404,"message":"File Not Found"}}')
            return self._send(200, (DATA / name).read_bytes())

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if time.monotonic() < loading_until:
                return self._send(503, (DATA / "health_loading.json").read_bytes())
            return self._send(200, (DATA / "chat.json").read_bytes())

    print(f"main: server is listening on http://{host}:{port}", flush=True)
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
