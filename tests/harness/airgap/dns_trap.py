"""TEST TOOL (molecule/default's air-gap proof): a DNS server that answers every question REFUSED
and writes each one to a log, so that a name lookup of any host is seen and named.

The instance's firewall (airgap_firewall.sh) redirects every DNS packet that is not for loopback, from
the instance itself and from the containers of its own dockerd, to this server; no lookup leaves the
instance, and none waits for a time-out. Each line of the log is JSON: time, protocol, client, the
name and the type asked for. Standard library only (it runs under the instance's python3).

    dns_trap.py --port 5353 --log /var/log/llmops-airgap/dns.log
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import struct
import threading
import time

REFUSED = 5


def question(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, end offset) of the first question of a DNS message (("?", 0, 12) when unreadable)."""
    labels, pos = [], 12
    try:
        while True:
            length = packet[pos]
            if length == 0:
                pos += 1
                break
            if length & 0xC0:  # no compression pointer in a lone question
                return "?", 0, 12
            labels.append(packet[pos + 1:pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        if len(packet) < pos + 4:
            return "?", 0, 12
        return ".".join(labels) or ".", struct.unpack("!H", packet[pos:pos + 2])[0], pos + 4
    except IndexError:
        return "?", 0, 12


def refusal(packet: bytes) -> bytes:
    """The answer REFUSED to a query: its id and question, QR set, OPCODE and RD kept, no records."""
    if len(packet) < 12:
        return b""
    ident, flags = struct.unpack("!HH", packet[:4])
    flags = 0x8000 | (flags & 0x7900) | REFUSED
    _name, _qtype, end = question(packet)
    return struct.pack("!HHHHHH", ident, flags, 1 if end > 12 else 0, 0, 0, 0) + packet[12:end]


class Log:
    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()

    def write(self, proto: str, client: str, packet: bytes) -> None:
        name, qtype, _end = question(packet)
        line = json.dumps({"time": round(time.time(), 3), "proto": proto, "client": client, "name": name, "type": qtype})
        with self.lock, open(self.path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux
PKTINFO = struct.Struct("I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind(("0.0.0.0", port))
    return sock


def serve_udp(sock: socket.socket, log: Log) -> None:
    """The answer must leave from the address the query was redirected to (127.0.0.1, or a bridge's
    address for a container's query), or conntrack cannot map it back to the server the client asked:
    IP_PKTINFO gives that address on receipt and sets it as the source on sending."""
    while True:
        packet, ancillary, _flags, client = sock.recvmsg(4096, socket.CMSG_SPACE(PKTINFO.size))
        local = b"\0\0\0\0"
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                _ifindex, _spec, local = PKTINFO.unpack(data[:PKTINFO.size])
        log.write("udp", client[0], packet)
        answer = refusal(packet)
        if answer:
            sock.sendmsg([answer], [(socket.IPPROTO_IP, IP_PKTINFO, PKTINFO.pack(0, local, b"\0\0\0\0"))], 0, client)


class TCPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        header = self.rfile.read(2)
        if len(header) < 2:
            return
        packet = self.rfile.read(struct.unpack("!H", header)[0])
        self.server.log.write("tcp", self.client_address[0], packet)
        answer = refusal(packet)
        self.wfile.write(struct.pack("!H", len(answer)) + answer)


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5353)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    log = Log(args.log)
    udp = udp_socket(args.port)  # both sockets bound before the line that says the trap answers
    tcp = TCPServer(("0.0.0.0", args.port), TCPHandler)
    tcp.log = log
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print(f"dns_trap: answering REFUSED on udp and tcp port {args.port}, log {args.log}", flush=True)
    serve_udp(udp, log)


if __name__ == "__main__":
    main()
