"""plugins/module_utils/_resp.py: RESP (Redis protocol) encoding and decoding, replies read from a socket."""

from __future__ import annotations

import importlib.util
import pathlib
import socket
import sys
import threading

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _resp


def test_encode_command():
    assert _resp.encode_command("AUTH", "pässword") == b"*2\r\n$4\r\nAUTH\r\n$9\r\np\xc3\xa4ssword\r\n"
    assert _resp.encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert _resp.encode_command(b"SELECT", 3) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
    with pytest.raises(TypeError):
        _resp.encode_command("PING", None)


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"+PONG\r\n", "PONG"),
        (b":42\r\n", 42),
        (b"$5\r\nhello\r\n", b"hello"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [b"a", [1]]),
        (b"*0\r\n", []),
    ],
)
def test_parse_reply(data, value):
    assert _resp.parse_reply(data) == (value, len(data))


def test_parse_error_reply():
    reply, _ignored = _resp.parse_reply(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    assert isinstance(reply, _resp.RedisReplyError) and reply.code == "WRONGPASS"
    assert _resp.RedisReplyError("").code == ""


def test_parse_two_replies_in_one_buffer():
    buf = b"+OK\r\n+PONG\r\n"
    first, pos = _resp.parse_reply(buf)
    second, end = _resp.parse_reply(buf, pos)
    assert (first, second, end) == ("OK", "PONG", len(buf))


@pytest.mark.parametrize("data", [b"", b"+PO", b"+PONG\r", b"$5\r\nhel", b"$5\r\nhello\r", b"*2\r\n$1\r\na\r\n", b":1"])
def test_incomplete_replies(data):
    with pytest.raises(_resp.IncompleteReply):
        _resp.parse_reply(data)


@pytest.mark.parametrize("data", [b"HTTP/1.1 400 Bad Request\r\n", b":abc\r\n", b"$x\r\n", b"*y\r\n", b"$3\r\nabcde\r\n"])
def test_not_resp(data):
    with pytest.raises(_resp.RespProtocolError):
        _resp.parse_reply(data)


def test_read_replies_across_small_chunks():
    left, right = socket.socketpair()
    try:
        right.settimeout(2)

        def send():
            for byte in b"+OK\r\n$4\r\nPONG\r\n":
                left.send(bytes([byte]))

        thread = threading.Thread(target=send)
        thread.start()
        assert _resp.read_replies(right, 2) == ["OK", b"PONG"]
        thread.join()
    finally:
        left.close()
        right.close()


def test_read_replies_when_the_peer_closes():
    left, right = socket.socketpair()
    left.sendall(b"+O")
    left.close()
    with pytest.raises(ConnectionResetError):
        _resp.read_replies(right, 1)
    right.close()
