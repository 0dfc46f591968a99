"""A small authoritative DNS server on loopback (dnslib) answering from a dict of records.

    records = {"policy-lab.test": [("TXT", "v=spf1 -all"), ("MX", "10 mx.policy-lab.test")]}
    with DNSServer(records) as dns:
        ...  # ask 127.0.0.1 port dns.port; dns.nameserver is "127.0.0.1:PORT"

A name in the dict answers NOERROR (with no records of a type it lacks); any other name
answers NXDOMAIN. ``records`` may be changed while the server runs. TXT values longer
than 255 bytes are cut into several strings, as in a zone file.
"""

import threading

from dnslib import MX, QTYPE, RCODE, RR, TXT, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger
from dnslib.server import DNSServer as _Server

TTL = 60


class DictResolver(BaseResolver):
    def __init__(self, records: dict[str, list[tuple[str, str]]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []  # (name, type) asked, in order
        self.lock = threading.Lock()

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        qname = request.q.qname
        qtype = QTYPE[request.q.qtype]
        name = str(qname).rstrip(".").lower()
        with self.lock:
            self.queries.append((name, qtype))
            known = {k.rstrip(".").lower(): v for k, v in self.records.items()}
        if name not in known:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in known[name]:
            if rtype == qtype:
                reply.add_answer(
                    RR(qname, getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=TTL)
                )
        return reply


def _rdata(rtype: str, value: str):  # type: ignore[no-untyped-def]
    if rtype == "TXT":
        raw = value.encode()
        return TXT([raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""])
    if rtype == "MX":
        preference, _, host = value.partition(" ")
        return MX(DNSLabel(host), int(preference))
    if rtype == "A":
        return A(value)
    raise ValueError(f"the test DNS server does not serve {rtype} records")


class DNSServer:
    """Starts on a free UDP port of 127.0.0.1 on ``__enter__``, stops on ``__exit__``."""

    def __init__(self, records: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.resolver = DictResolver(records if records is not None else {})
        self._server: _Server | None = None
        self.port = 0

    @property
    def records(self) -> dict[str, list[tuple[str, str]]]:
        return self.resolver.records

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "DNSServer":
        quiet = DNSLogger(log="-request,-reply,-truncated,-error", logf=lambda _s: None)
        self._server = _Server(self.resolver, address="127.0.0.1", port=0, logger=quiet)
        self.port = self._server.server.server_address[1]
        self._server.start_thread()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server.server.server_close()
            self._server = None

    def __enter__(self) -> "DNSServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
