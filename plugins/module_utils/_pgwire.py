# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Just enough of Postgres's wire protocol (version 3) to log in and leave: the startup message,
password authentication (SCRAM-SHA-256 as RFC 5802/7677 and Postgres describe it, MD5, cleartext,
trust), and the server's error fields. No third-party driver on the managed host: ``stack_health``
uses it to prove that the gateway's database accepts the gateway's credentials.

Pure parts (unit-tested without a network): message framing, the SCRAM client's messages and the
server signature check, error-field parsing. Python 3.8+ syntax.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

PROTOCOL_VERSION = 196608  # 3.0


class PgError(Exception):
    """The server's ErrorResponse: ``fields`` by their one-letter codes (S severity, C SQLSTATE, M message)."""

    def __init__(self, fields):
        self.fields = dict(fields)
        super().__init__("%s %s: %s" % (self.fields.get("S", "ERROR"), self.fields.get("C", "?"), self.fields.get("M", "")))

    @property
    def sqlstate(self):
        return self.fields.get("C")


class PgProtocolError(Exception):
    """Not a Postgres answer, or one this client does not speak."""


def startup_message(user, database, application="llmops-stack-health"):
    body = struct.pack("!i", PROTOCOL_VERSION)
    for key, value in (("user", user), ("database", database), ("application_name", application)):
        body += key.encode() + b"\0" + value.encode("utf-8") + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def message(kind, body=b""):
    return kind + struct.pack("!i", len(body) + 4) + body


def error_fields(body):
    """The fields of an ErrorResponse/NoticeResponse body: {code letter: text}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1].decode("ascii", "replace")] = part[1:].decode("utf-8", "replace")
    return fields


def read_message(sock):
    """(kind byte, body) of the next message."""
    head = _read_exact(sock, 5)
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    if length < 4 or length > 1 << 24:
        raise PgProtocolError("a message of length %d: not a Postgres server" % length)
    return kind, _read_exact(sock, length - 4)


def _read_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise PgProtocolError("the server closed the connection")
        data += chunk
    return data


# --- SCRAM-SHA-256 ---------------------------------------------------------------------------

class ScramClient:
    """The client side of SCRAM-SHA-256 without channel binding (``n,,``), as Postgres runs it: the
    user name in the messages is empty (Postgres takes it from the startup message)."""

    def __init__(self, password, nonce=None, user=""):
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self.client_first_bare = "n=%s,r=%s" % (user, self.nonce)
        self.server_signature = None

    def first_message(self):
        return "n,," + self.client_first_bare

    def final_message(self, server_first):
        attrs = dict(item.split("=", 1) for item in server_first.split(","))
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s"), attrs.get("i")
        if not nonce.startswith(self.nonce) or salt is None or iterations is None:
            raise PgProtocolError("a SCRAM server-first message this client does not accept")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode("utf-8"), base64.b64decode(salt), int(iterations))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + nonce
        auth_message = ",".join((self.client_first_bare, server_first, without_proof)).encode("utf-8")
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = (int.from_bytes(client_key, "big") ^ int.from_bytes(signature, "big")).to_bytes(len(client_key), "big")
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode("ascii")
        return without_proof + ",p=" + base64.b64encode(proof).decode("ascii")

    def verify_final(self, server_final):
        attrs = dict(item.split("=", 1) for item in server_final.split(",") if "=" in item)
        if "e" in attrs:
            raise PgProtocolError("SCRAM refused by the server: %s" % attrs["e"])
        if not self.server_signature or not hmac.compare_digest(attrs.get("v", ""), self.server_signature):
            raise PgProtocolError("the server's SCRAM signature does not match: it does not know this password")


def login(sock, user, password, database):
    """Log in over ``sock`` and leave (Terminate). Returns {"auth": method, "server_version": ...};
    raises PgError (the server refused: wrong password, unknown database, starting up ...) or
    PgProtocolError."""
    sock.sendall(startup_message(user, database))
    method, scram, info = "trust", None, {}
    while True:
        kind, body = read_message(sock)
        if kind == b"E":
            raise PgError(error_fields(body))
        if kind == b"R":
            code = struct.unpack("!i", body[:4])[0]
            if code == 0:
                continue
            if code == 3:
                method = "password"
                sock.sendall(message(b"p", (password or "").encode("utf-8") + b"\0"))
            elif code == 5:
                method = "md5"
                inner = hashlib.md5(((password or "") + user).encode("utf-8")).hexdigest()  # noqa: S324 (the protocol's)
                outer = "md5" + hashlib.md5(inner.encode("ascii") + body[4:8]).hexdigest()  # noqa: S324
                sock.sendall(message(b"p", outer.encode("ascii") + b"\0"))
            elif code == 10:
                mechanisms = [m.decode() for m in body[4:].split(b"\0") if m]
                if "SCRAM-SHA-256" not in mechanisms:
                    raise PgProtocolError("the server offers %s, this client speaks SCRAM-SHA-256" % ", ".join(mechanisms))
                method, scram = "scram-sha-256", ScramClient(password or "")
                first = scram.first_message().encode("utf-8")
                sock.sendall(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            elif code == 11 and scram:
                sock.sendall(message(b"p", scram.final_message(body[4:].decode("utf-8")).encode("utf-8")))
            elif code == 12 and scram:
                scram.verify_final(body[4:].decode("utf-8"))
            else:
                raise PgProtocolError("authentication request %d, which this client does not speak" % code)
        elif kind == b"S":
            name, _sep, rest = body.partition(b"\0")
            if name == b"server_version":
                info["server_version"] = rest.split(b"\0")[0].decode("utf-8", "replace")
        elif kind == b"Z":
            try:
                sock.sendall(message(b"X"))
            except OSError:
                pass
            info["auth"] = method
            return info
        elif kind not in (b"K", b"N"):
            raise PgProtocolError("unexpected message %r during the login" % kind)
