"""A webhook receiver for the e2e tests: a python http.server in a thread on 127.0.0.1 that
records every POST and answers a settable status; stop() closes the port and start() reopens
it on the same one (a receiver that is down, then back)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Records every POST; answers `status` (settable). stop() closes the port, start()
    reopens it on the same port."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []   # dicts: path, headers (lower-case names), body, json
        self.status = 200
        self.port = 0
        self.httpd = None

    def start(self):
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with rcv.lock:
                    rcv.requests.append({"path": self.path, "body": body, "json": doc,
                                         "headers": {k.lower(): v for k, v in self.headers.items()}})
                    status = rcv.status
                out = b'{"ok":true}' if status < 300 else b"receiver says no\n"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def events(self, webhook=None, action=None):
        with self.lock:
            out = list(self.requests)
        if webhook is not None:
            out = [r for r in out if r["headers"].get("x-meridian-webhook") == webhook]
        if action is not None:
            out = [r for r in out if r["json"] and r["json"].get("action") == action]
        return out
