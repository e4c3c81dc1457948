# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""RESP2, the Redis serialization protocol: encode a command, decode replies, read them from a socket.

Only what the stack_health ``redis`` check needs (AUTH and PING); no connection handling.
Python 3.8+ syntax: module_utils run with the managed host's Python.
"""

from __future__ import annotations


class RedisReplyError(str):
    """A RESP error reply ('-ERR ...'); a str subclass so it prints as the server's text."""

    @property
    def code(self):
        return self.split(" ", 1)[0] if self else ""


class IncompleteReply(Exception):
    """The buffer ends before the reply does: read more."""


class RespProtocolError(ValueError):
    """The bytes are not RESP."""


def encode_command(*args):
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError("RESP arguments must be str, bytes or int, not %s" % type(arg).__name__)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _line(buf, pos):
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > 64 * 1024:
            raise RespProtocolError("line longer than 64 KiB")
        raise IncompleteReply()
    return buf[pos:end], end + 2


def parse_reply(buf, pos=0):
    """Decode one RESP2 reply from ``buf`` at ``pos``: returns (value, next position).

    Simple strings -> str, errors -> RedisReplyError, integers -> int, bulk strings -> bytes
    (None for null), arrays -> list (None for null). Raises IncompleteReply when more bytes are
    needed and RespProtocolError when the bytes are not RESP.
    """
    if pos >= len(buf):
        raise IncompleteReply()
    kind = buf[pos:pos + 1]
    line, after = _line(buf, pos + 1)
    if kind == b"+":
        return line.decode("utf-8", "replace"), after
    if kind == b"-":
        return RedisReplyError(line.decode("utf-8", "replace")), after
    if kind == b":":
        try:
            return int(line), after
        except ValueError:
            raise RespProtocolError("bad integer reply %r" % line) from None
    if kind == b"$":
        try:
            length = int(line)
        except ValueError:
            raise RespProtocolError("bad bulk length %r" % line) from None
        if length < 0:
            return None, after
        if len(buf) < after + length + 2:
            raise IncompleteReply()
        if buf[after + length:after + length + 2] != b"\r\n":
            raise RespProtocolError("bulk string not terminated by CRLF")
        return buf[after:after + length], after + length + 2
    if kind == b"*":
        try:
            count = int(line)
        except ValueError:
            raise RespProtocolError("bad array length %r" % line) from None
        if count < 0:
            return None, after
        items = []
        for _index in range(count):
            item, after = parse_reply(buf, after)
            items.append(item)
        return items, after
    raise RespProtocolError("not a RESP reply: %r" % buf[pos:pos + 40])


def read_replies(sock, count, limit=1024 * 1024):
    """Read ``count`` replies from a connected socket (its timeout applies)."""
    buf = b""
    replies = []
    pos = 0
    while len(replies) < count:
        try:
            value, pos = parse_reply(buf, pos)
            replies.append(value)
            continue
        except IncompleteReply:
            pass
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        buf += chunk
        if len(buf) > limit:
            raise RespProtocolError("reply larger than %d bytes" % limit)
    return replies
