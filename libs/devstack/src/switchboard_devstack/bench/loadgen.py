"""The lean load generator: its own process, so its CPU is measured apart from everything else.

HTTP/1.1 keep-alive over ``--connections`` non-blocking sockets (spread in turn over the ``--port`` list when
it names several, e.g. ingest replicas), one request in flight per connection,
request bytes built by concatenation, responses parsed only as far as the status code and Content-Length.
No event loop: one thread, epoll, and as few wake-ups as possible, because on this kind of virtual machine
each wake-up of an idle process costs 50-150 us of CPU, more than the work of a request. Two schedules:

* open loop (``--rate R > 0``): request ``i`` is due at ``t0 + i / R`` whatever happened to earlier ones.
  The generator wakes at most once per ``--tick-ms`` and then sends every request due within half a tick
  (so each goes within +-tick/2 of its due time; a due request waits for a free connection, and the
  recorded send time shows it). Answers are collected at those wake-ups, not when they arrive: their
  arrival time is the kernel's receive timestamp (SO_TIMESTAMPNS), so collecting late costs no accuracy.
* closed loop (``--rate 0``): every connection sends its next request as soon as its answer is read.

It talks to the bench on stdin/stdout: it prints ``ready`` once connected, starts on ``go``, prints
``done ...`` when every request was answered (or ``--duration`` ran out), and on ``report`` writes the
per-request times (``time.monotonic()`` seconds, the clock the bench's watcher uses) to ``--out`` and exits.
Only the standard library is imported, to keep its start and its footprint small.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import select
import socket
import struct
import sys
import time
import zlib
from array import array
from collections import deque
from collections.abc import Sequence

monotonic = time.monotonic
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export the constant
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")


def message_body(prefix: str, i: int) -> bytes:
    """The JSON body of message ``i``: a unique message id and a unique customer (so a new conversation)."""
    ident = f"{prefix}{i}"
    return (
        f'{{"message_id":"{ident}","customer":{{"id":"{ident}"}},"text":"bench","skills":["general"]}}'
    ).encode()


def parse_head(head: bytes) -> tuple[int, int]:
    """Status code and Content-Length of a response head (up to, excluding, the blank line).

    Content-Length is -1 when absent (the bench's servers always send it)."""
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return status, -1
    end = lower.find(b"\r\n", at + 2)
    return status, int(lower[at + 17 : end if end >= 0 else len(lower)])


def parse_ports(text: str) -> list[int]:
    """``8001`` or ``8001,8005``: the ports the connections are spread over."""
    ports = [int(p) for p in text.split(",") if p.strip()]
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise ValueError(f"not a port list: {text!r}")
    return ports


class Connection:
    __slots__ = ("body_start", "buffer", "expect", "fd", "inflight", "port", "sock", "status")

    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock = sock
        self.port = port
        self.fd = sock.fileno()
        self.buffer = bytearray()
        self.expect = -1  # total length of the response being read, once its head is parsed
        self.body_start = 0
        self.status = 0
        self.inflight = -1


def phone_for(prefix: str, i: int) -> str:
    """A North American number of its own for message ``i`` of the run named by ``prefix``: every
    message from a new customer, as on the API channel (the run's digits keep runs apart)."""
    run = zlib.crc32(prefix.encode()) % 900 + 100
    return f"1{run}{i:07d}"[:11]


def whatsapp_body(prefix: str, i: int) -> bytes:
    """A WhatsApp Cloud API webhook carrying one text message (the shape Meta posts)."""
    sender = phone_for(prefix, i)
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":"bench-waba","changes":[{"field":"messages",'
        '"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000",'
        '"phone_number_id":"bench-number"},'
        f'"contacts":[{{"profile":{{"name":"Bench {i}"}},"wa_id":"{sender}"}}],'
        f'"messages":[{{"from":"{sender}","id":"wamid.{prefix}{i}","timestamp":"{int(time.time())}",'
        '"type":"text","text":{"body":"bench"}}]}}]}]}'
    ).encode()


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.count: int = args.count
        self.rate: float = args.rate
        self.tick: float = max(0.001, args.tick_ms / 1000)
        self.whatsapp = args.channel == "whatsapp"
        self.secret = args.secret.encode()
        # WhatsApp requests carry their own signature header (an HMAC of each body), the API channel a key.
        credential = "" if self.whatsapp else f"Authorization: {args.auth}\r\n"
        self.head = (
            f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port[0]}\r\n"
            f"{credential}Content-Type: application/json\r\n"
        ).encode()
        self.send_t = array("d", bytes(8 * self.count))
        self.ack_t = array("d", bytes(8 * self.count))
        self.status = array("H", bytes(2 * self.count))
        self.epoll = select.epoll()
        self.conns: dict[int, Connection] = {}
        # Free connections, used in turn (first freed, first used) so that none stays idle long enough for
        # the server's keep-alive timeout to close it.
        self.idle: deque[Connection] = deque()
        self.backlog: deque[int] = deque()
        self.next_i = 0
        self.inflight = 0
        self.ok = 0
        self.failed = 0
        self.reconnects = 0
        self.sample_body = ""
        self.t0 = 0.0
        self.deadline = float("inf")
        self.stopped = False
        # kernel receive timestamps are CLOCK_REALTIME; this turns them into time.monotonic()
        self.realtime_offset = time.time() - monotonic()

    # -- connections --------------------------------------------------------------------------------------

    def connect(self, port: int) -> Connection:
        sock = socket.create_connection((self.args.host, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        conn = Connection(sock, port)
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLIN)
        return conn

    def open(self) -> None:
        ports = self.args.port
        self.idle = deque(self.connect(ports[i % len(ports)]) for i in range(self.args.connections))

    def drop(self, conn: Connection) -> None:
        """The server closed the connection (or it broke): fail its request, open a new one."""
        self.epoll.unregister(conn.fd)
        del self.conns[conn.fd]
        conn.sock.close()
        if conn.inflight >= 0:
            self.inflight -= 1
            self.failed += 1
            self.ack_t[conn.inflight] = monotonic()
        for _ in range(50):
            try:
                fresh = self.connect(conn.port)
            except OSError:
                time.sleep(0.1)
                continue
            self.reconnects += 1
            self.serve(fresh)
            return

    # -- requests -----------------------------------------------------------------------------------------

    def request(self, i: int) -> bytes:
        if self.whatsapp:
            body = whatsapp_body(self.args.prefix, i)
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            signature = f"X-Hub-Signature-256: sha256={digest}\r\n".encode()
        else:
            body, signature = message_body(self.args.prefix, i), b""
        return self.head + signature + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    def issue(self, conn: Connection, i: int) -> None:
        data = self.request(i)
        conn.inflight = i
        self.inflight += 1
        self.send_t[i] = monotonic()
        try:
            sent = conn.sock.send(data)
            if sent < len(data):  # a full socket buffer: not with requests this small, but be correct
                conn.sock.setblocking(True)
                conn.sock.sendall(data[sent:])
                conn.sock.setblocking(False)
        except OSError:
            self.drop(conn)

    def serve(self, conn: Connection) -> None:
        """Give a free connection its next request, or park it."""
        if self.backlog:
            self.issue(conn, self.backlog.popleft())
        elif self.rate <= 0 and not self.stopped and self.next_i < self.count:
            if monotonic() >= self.deadline:
                self.stopped = True
                self.idle.append(conn)
            else:
                self.next_i += 1
                self.issue(conn, self.next_i - 1)
        else:
            self.idle.append(conn)

    def read(self, conn: Connection) -> None:
        try:
            data, ancillary, _, _ = conn.sock.recvmsg(65536, _CMSG_SPACE)
        except BlockingIOError:
            return
        except OSError:
            self.drop(conn)
            return
        if not data:
            self.drop(conn)
            return
        arrived = 0.0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(value)
                arrived = sec + nsec / 1e9 - self.realtime_offset
        buffer = conn.buffer
        buffer += data
        while True:
            if conn.expect < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                conn.status, length = parse_head(bytes(buffer[:end]))
                if length < 0:  # no Content-Length: not something this client reads
                    self.drop(conn)
                    return
                conn.body_start = end + 4
                conn.expect = conn.body_start + length
            if len(buffer) < conn.expect:
                return
            body = bytes(buffer[conn.body_start : conn.expect]) if not self.sample_body else b""
            del buffer[: conn.expect]
            conn.expect = -1
            self.complete(conn, conn.status, body, arrived or monotonic())

    def complete(self, conn: Connection, status: int, body: bytes, arrived: float) -> None:
        i = conn.inflight
        if i < 0:
            return
        conn.inflight = -1
        self.inflight -= 1
        self.ack_t[i] = arrived
        self.status[i] = status
        if 200 <= status < 300:
            self.ok += 1
            if not self.sample_body:
                self.sample_body = body.decode(errors="replace")
        else:
            self.failed += 1
        self.serve(conn)

    def collect(self, timeout: float) -> None:
        for fd, _ in self.epoll.poll(timeout):
            if (conn := self.conns.get(fd)) is not None:
                self.read(conn)

    # -- schedules ----------------------------------------------------------------------------------------

    def finished(self) -> bool:
        return not self.inflight and (self.stopped or (self.next_i >= self.count and not self.backlog))

    def run(self) -> None:
        self.t0 = monotonic()
        self.realtime_offset = time.time() - monotonic()
        if self.args.duration > 0:
            self.deadline = self.t0 + self.args.duration
        elif self.rate > 0:
            self.deadline = self.t0 + self.count / self.rate + self.args.timeout
        if self.rate > 0:
            self.open_loop()
        else:
            self.closed_loop()

    def open_loop(self) -> None:
        interval, half = 1.0 / self.rate, self.tick / 2
        while not self.finished():
            now = monotonic()
            if now >= self.deadline:
                self.stopped = True
                self.backlog.clear()
            self.collect(0)
            if self.stopped:
                if self.inflight and monotonic() < self.deadline + self.args.timeout:
                    self.collect(self.tick)
                    continue
                return
            horizon = monotonic() + half
            while self.next_i < self.count and self.t0 + self.next_i * interval <= horizon:
                i = self.next_i
                self.next_i += 1
                if self.idle:
                    self.issue(self.idle.popleft(), i)
                else:
                    self.backlog.append(i)
            if self.next_i < self.count:
                now = monotonic()
                time.sleep(max(self.tick, self.t0 + self.next_i * interval - half - now))
            elif self.inflight:
                self.collect(self.tick)  # everything is sent: wait for the last answers

    def closed_loop(self) -> None:
        free = list(self.idle)
        self.idle.clear()
        for conn in free:
            self.serve(conn)
        limit = self.deadline + self.args.timeout
        while not self.finished() and monotonic() < limit:
            self.collect(1.0)
            if monotonic() >= self.deadline:
                self.stopped = True

    def results(self) -> dict[str, object]:
        sent = self.next_i
        return {
            "prefix": self.args.prefix,
            "rate": self.rate,
            "connections": self.args.connections,
            "t0": self.t0,
            "sent": sent,
            "ok": self.ok,
            "failed": self.failed,
            "reconnects": self.reconnects,
            "send": self.send_t[:sent].tolist(),
            "ack": self.ack_t[:sent].tolist(),
            "status": self.status[:sent].tolist(),
            "sample_body": self.sample_body,
        }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="switchboard-loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=parse_ports,
        required=True,
        help="a port, or several comma-separated (connections in turn)",
    )
    parser.add_argument("--path", default="/v1/messages")
    parser.add_argument("--auth", default="Bearer dev-ingest-key", help="the Authorization header's value")
    parser.add_argument("--channel", choices=["api", "whatsapp"], default="api")
    parser.add_argument("--secret", default="", help="whatsapp: the app secret that signs each body")
    parser.add_argument("--prefix", required=True, help="message ids are <prefix><i>")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second; 0: closed loop")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tick-ms", type=float, default=10.0, help="open loop: wake at most this often")
    parser.add_argument("--duration", type=float, default=0.0, help="stop issuing after this many s")
    parser.add_argument("--timeout", type=float, default=30.0, help="wait this long for the last answers")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    gen = Generator(args)
    gen.open()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    gen.run()
    elapsed = monotonic() - gen.t0
    print(f"done sent={gen.next_i} ok={gen.ok} failed={gen.failed} elapsed={elapsed:.3f}", flush=True)
    if sys.stdin.readline().strip() == "report":
        with open(args.out, "w") as out:
            json.dump(gen.results(), out)
        print("written", flush=True)


if __name__ == "__main__":
    main()
