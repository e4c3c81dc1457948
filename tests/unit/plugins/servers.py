"""Tiny loopback servers for unit tests: a scripted HTTP server and a Redis-protocol (RESP) server.

Both run in a daemon thread on an ephemeral 127.0.0.1 port and are context managers.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Route:
    """What the fake HTTP server answers on one path."""

    def __init__(self, status=200, body=b"", content_type="application/json", delay=0.0):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.delay = delay


class FakeHTTP:
    """routes: path (query included, or the bare path) -> Route or callable(request dict) -> Route."""

    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                fake.requests.append(request)
                route = fake.routes.get(self.path, fake.routes.get(self.path.split("?", 1)[0]))
                if callable(route):
                    route = route(request)
                if route is None:
                    route = Route(404, {"detail": "Not Found"})
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = handle_any  # noqa: N815 (http.server naming)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _command(buf):
    """Split one RESP array of bulk strings off ``buf``: (list of str, rest) or (None, buf)."""
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None, buf
    head, rest = buf.split(b"\r\n", 1)
    args = []
    for _ignored in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None, buf
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line[1:])
        if len(rest) < size + 2:
            return None, buf
        args.append(rest[:size].decode())
        rest = rest[size + 2:]
    return args, rest


class FakeRedis:
    """Answers AUTH and PING like redis-server 7 with or without ``requirepass``.

    mode: "normal", "silent" (never answers), "close" (closes at once), "http" (answers like an
    HTTP server), "split" (sends +PONG in two pieces), "loading" (PING gets -LOADING).
    """

    def __init__(self, password=None, mode="normal", port=0):
        self.password = password
        self.mode = mode
        self.commands = []
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                if fake.mode == "close":
                    return
                authed = fake.password is None
                buf = b""
                while True:
                    try:
                        chunk = sock.recv(4096)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                    if fake.mode == "silent":
                        continue
                    if fake.mode == "http":
                        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        return
                    while True:
                        args, buf = _command(buf)
                        if args is None:
                            break
                        fake.commands.append(args)
                        reply, authed = fake.reply(args, authed)
                        if fake.mode == "split" and reply == b"+PONG\r\n":
                            sock.sendall(b"+PO")
                            time.sleep(0.05)
                            sock.sendall(b"NG\r\n")
                        else:
                            sock.sendall(reply)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def reply(self, args, authed):
        name = args[0].upper()
        if name == "AUTH":
            given = args[-1]
            if self.password is None:
                return (b"-ERR AUTH <password> called without any password configured for the default user. "
                        b"Are you sure your configuration is correct?\r\n"), authed
            if given == self.password and len(args) in (2, 3):
                return b"+OK\r\n", True
            return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n", authed
        if not authed:
            return b"-NOAUTH Authentication required.\r\n", authed
        if name == "PING":
            if self.mode == "loading":
                return b"-LOADING Redis is loading the dataset in memory\r\n", authed
            return b"+PONG\r\n", authed
        return b"-ERR unknown command\r\n", authed

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port():
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


STANDIN_SCRIPT = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "standin_engine" / "standin_engine.py"


def load_standin():
    """The stand-in engine fixture as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("standin_engine_fixture", STANDIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandinEngine:
    """The stand-in engine (not vLLM) served from a thread on an ephemeral loopback port."""

    def __init__(self, *argv):
        self.server, self.state = load_standin().make_server(["/models/Qwen3-8B", "--host", "127.0.0.1", "--port", "0", *argv])
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
