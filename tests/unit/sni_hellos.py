"""Real and hand-made TLS ClientHellos for the SNI and sniff tests.

CAPTURED: first bytes sent by real clients to a loopback listener (Debian 12, OpenSSL 3.0.19,
curl 7.88.1), each to https://api.example.test:PORT with --resolve / -servername:
`openssl s_client -servername api.example.test -alpn h2,http/1.1 -tls1_3`, `... -tls1_2`,
`openssl s_client -noservername`, `curl -k`, `curl -k --tls-max 1.2`.
"""

from __future__ import annotations

import ssl

NAME = "api.example.test"

CAPTURED: dict[str, bytes] = {
    "openssl_tls13_alpn": bytes.fromhex(
        "1603010107010001030303072e02c9b58be51ebb1862f6e3a491f9b1da4a793d41a49e977f2d1424e70dc120"
        "cb5093041c66e7e126fbb9a73027401653959fa3f6af07d5691eaaf0b629b306000813021303130100ff0100"
        "00b20000001500130000106170692e6578616d706c652e74657374000b000403000102000a00160014001d00"
        "17001e0019001801000101010201030104002300000010000e000c02683208687474702f312e310016000000"
        "170000000d001e001c040305030603080708080809080a080b080408050806040105010601002b0003020304"
        "002d00020101003300260024001d0020087922b3a4c01dc289cfd10ee643c0dc4f84d8ccab7d7fe9e62027d3"
        "c5216d37"
    ),
    "openssl_tls12": bytes.fromhex(
        "16030100d0010000cc0303e4fa057522e90cc5b4f0a8560848dfcd16fe7af1941e313dba5bfd24e87b2ddc00"
        "0038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033"
        "009d009c003d003c0035002f00ff0100006b0000001500130000106170692e6578616d706c652e7465737400"
        "0b000403000102000a000c000a001d0017001e00190018002300000016000000170000000d002a0028040305"
        "030603080708080809080a080b080408050806040105010601030303010302040205020602"
    ),
    "openssl_noservername": bytes.fromhex(
        "16030101240100012003036912eaabb00f1fd58ee52cb17520f15b8a0dc45ddd548169c0e3332cdfafee9420"
        "b03a52102b5cbaae225a16265c0ec6cf9e11202f215f5c36a073ee871568df89003e130213031301c02cc030"
        "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d"
        "003c0035002f00ff01000099000b000403000102000a00160014001d0017001e001900180100010101020103"
        "0104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401"
        "05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00"
        "2034523e51e7239327759645dc54728656f790520dad9ec262ba2cc37c4533901f"
    ),
    "curl_default": bytes.fromhex(
        "1603010200010001fc0303c6e9252c027423e3b20273bdda77b5a395f912db7f5a3a7af0e2cb768dd4e01520"
        "3172c5993c7ad9fdfd1f1dc2b8bcdb463f28ed21d2b8992bf2ba562b243399cf003e130213031301c02cc030"
        "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d"
        "003c0035002f00ff010001750000001500130000106170692e6578616d706c652e74657374000b0004030001"
        "02000a00160014001d0017001e00190018010001010102010301040010000e000c02683208687474702f312e"
        "31001600000017000000310000000d002a0028040305030603080708080809080a080b080408050806040105"
        "010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d0020"
        "a739d2b86d5a4bf327491f1050098da6827e710fad9f44d7e72f549929da7059001500ad0000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000"
    ),
    "curl_tls12": bytes.fromhex(
        "16030100de010000da0303e23898eaaa48bb9e8548ce56411bc7cc43a65fcfecb2b1f5cc8ce10398ecccdc00"
        "0038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033"
        "009d009c003d003c0035002f00ff010000790000001500130000106170692e6578616d706c652e7465737400"
        "0b000403000102000a000c000a001d0017001e001900180010000e000c02683208687474702f312e31001600"
        "0000170000000d002a0028040305030603080708080809080a080b0804080508060401050106010303030103"
        "02040205020602"
    ),
}


def python_hello(
    server_hostname: str | None = NAME,
    *,
    alpn: list[str] | None = None,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight of Python's ssl client, over memory BIOs (no socket)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def ext(etype: int, data: bytes) -> bytes:
    return u16(etype) + u16(len(data)) + data


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + u16(len(n)) + n for n in names)
    return ext(0, u16(len(entries)) + entries)


def alpn_ext(*names: bytes) -> bytes:
    entries = b"".join(bytes([len(n)]) + n for n in names)
    return ext(16, u16(len(entries)) + entries)


def hello_body(
    exts: bytes | None,
    *,
    version: int = 0x0303,
    sid: bytes = b"",
    suites: bytes = b"\x13\x01\x13\x02",
    comp: bytes = b"\x00",
) -> bytes:
    """A ClientHello body; `exts` None omits the extensions block (TLS <= 1.2)."""
    body = u16(version) + bytes(32) + bytes([len(sid)]) + sid
    body += u16(len(suites)) + suites + bytes([len(comp)]) + comp
    if exts is not None:
        body += u16(len(exts)) + exts
    return body


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def records(payload: bytes, sizes: list[int] | None = None, version: bytes = b"\x03\x01") -> bytes:
    """Wrap `payload` in handshake records of the given fragment sizes (last takes the rest)."""
    out, p = bytearray(), 0
    for size in [*(sizes or []), len(payload)]:
        chunk = payload[p : p + size]
        if not chunk:
            break
        out += b"\x16" + version + u16(len(chunk)) + chunk
        p += len(chunk)
    return bytes(out)


def hello(exts: bytes | None, *, version: int = 0x0303, sid: bytes = b"") -> bytes:
    """A one-record ClientHello with the given extensions block."""
    return records(handshake(hello_body(exts, version=version, sid=sid)))


def split_records(data: bytes) -> tuple[bytes, bytes]:
    """(handshake bytes of a one-record hello, bytes after that record)."""
    length = data[3] << 8 | data[4]
    return data[5 : 5 + length], data[5 + length :]
