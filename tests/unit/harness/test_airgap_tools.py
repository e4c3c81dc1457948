"""The air-gap proof's tools: the DNS trap names what was asked and refuses it at once; the PyPI
mirror's layout is PEP 503 (tests/harness/airgap)."""

import importlib.util
import json
import pathlib
import socket
import struct
import subprocess
import sys
import time

HARNESS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "harness" / "airgap"


def load(name):
    spec = importlib.util.spec_from_file_location(name, HARNESS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dns_trap = load("dns_trap")
pip_index = load("pip_index")


def query(name, qtype=1, ident=0x1234, edns=False):
    """A DNS query as glibc sends it (RD set), optionally with an EDNS OPT record after the question."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1 if edns else 0) + qname + struct.pack("!HH", qtype, 1)
    if edns:
        packet += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return packet


def test_the_question_is_read():
    assert dns_trap.question(query("index.example.org", 28))[:2] == ("index.example.org", 28)
    assert dns_trap.question(b"\x00" * 5)[:2] == ("?", 0)


def test_the_answer_is_refused_with_the_question_only():
    packet = query("huggingface.co", 1, ident=0xBEEF, edns=True)
    answer = dns_trap.refusal(packet)
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", answer[:12])
    assert (ident, flags & 0x8000, flags & 0x0100, flags & 0x000F) == (0xBEEF, 0x8000, 0x0100, 5)
    assert (qd, an, ns, ar) == (1, 0, 0, 0)
    # the question, and nothing of the query's OPT record after it
    assert answer[12:] == packet[12:12 + len(b"\x0bhuggingface\x02co\x00") + 4]


def test_a_lookup_through_the_running_trap_fails_at_once_and_is_logged(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "dns.log"
    trap = subprocess.Popen([sys.executable, str(HARNESS / "dns_trap.py"), "--port", str(port), "--log", str(log)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "dns_trap: answering" in trap.stdout.readline()
        for name, kind in (("udp.example.invalid", socket.SOCK_DGRAM), ("tcp.example.invalid", socket.SOCK_STREAM)):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.settimeout(5)
                start = time.monotonic()
                if kind == socket.SOCK_DGRAM:
                    sock.sendto(query(name), ("127.0.0.1", port))
                    answer = sock.recv(512)
                else:
                    sock.connect(("127.0.0.1", port))
                    packet = query(name)
                    sock.sendall(struct.pack("!H", len(packet)) + packet)
                    answer = sock.recv(514)[2:]
                assert time.monotonic() - start < 2
                assert struct.unpack("!H", answer[2:4])[0] & 0x000F == 5
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(log.read_text().splitlines() if log.exists() else []) < 2:
            time.sleep(0.05)
        seen = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(s["proto"], s["name"], s["client"]) for s in seen] == [
            ("udp", "udp.example.invalid", "127.0.0.1"), ("tcp", "tcp.example.invalid", "127.0.0.1")]
    finally:
        trap.kill()
        trap.wait(10)


def test_pip_index_names_and_platforms():
    assert pip_index.project("modelscope_hub-0.5.1-py3-none-any.whl") == "modelscope-hub"
    assert pip_index.project("charset_normalizer-3.5.3-cp313-cp313-manylinux1_x86_64.whl") == "charset-normalizer"
    tags = pip_index.platforms("2.41", "x86_64")
    assert tags[0] == "manylinux_2_41_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert tags[-1] == "any" and "manylinux_2_4_x86_64" not in tags
