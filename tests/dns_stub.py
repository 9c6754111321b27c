"""A tiny authoritative DNS server for tests: fixed records on loopback (UDP, TCP), counted.

It lets tests prove what reached "upstream": a denied name must leave no count, a cached or
single-flight lookup exactly one per type. Names in `silent` are never answered (timeouts),
names in `servfail` get SERVFAIL, names in `truncate` an empty truncated (TC) answer over UDP and
the full one over TCP, unknown names NXDOMAIN; while `gate` is clear every answer waits.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@dataclass
class Zone:
    """name -> {"A": [...], "AAAA": [...], "CNAME": ["target"], "TXT": [...]}; ttls per name."""

    records: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    ttl: dict[str, int] = field(default_factory=dict)
    default_ttl: int = 30
    silent: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        if name in self.silent:
            return None
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        qtype = dns.rdatatype.to_text(question.rdtype)
        owner = question.name
        for _hop in range(8):
            entry = self.records.get(name)
            if entry is None:
                if not response.answer:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return response
            ttl = self.ttl.get(name, self.default_ttl)
            if "CNAME" in entry and qtype != "CNAME":
                target = entry["CNAME"][0]
                response.answer.append(
                    dns.rrset.from_text_list(owner, ttl, "IN", "CNAME", [target + "."])
                )
                name, owner = target, dns.name.from_text(target)
                continue
            values = entry.get(qtype, [])
            if values:
                response.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", qtype, values))
            return response
        return response


class StubDns:
    """Serve a Zone on 127.0.0.1 (UDP and TCP, one port) and count (name, qtype) queries."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.counts: Counter[tuple[str, str]] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    def total(self) -> int:
        return sum(self.counts.values())

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp, _proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("127.0.0.1", 0)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    lambda r, w: self.spawn(self._serve_tcp(r, w)), "127.0.0.1", port
                )
            except OSError:
                udp.close()
                continue
            self._udp = udp
            self.address = ("127.0.0.1", port)
            return self.address
        raise RuntimeError("no free port for the stub DNS server")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._tcp is not None:
                await self._tcp.wait_closed()

    async def answer(self, wire: bytes, *, udp: bool = False) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.counts[(name, dns.rdatatype.to_text(question.rdtype))] += 1
        await self.gate.wait()
        if udp and name in self.zone.truncate:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return truncated.to_wire()
        response = self.zone.respond(query)
        return None if response is None else response.to_wire()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply_udp(self, wire: bytes, addr: Any) -> None:
        out = await self.answer(wire, udp=True)
        if out is not None and self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(out, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                out = await self.answer(wire)
                if out is None:
                    continue
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, stub: StubDns) -> None:
        self.stub = stub

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stub.spawn(self.stub._reply_udp(data, addr))
