"""`--upstream-proxy URL`: every allowed connection goes through a parent HTTP proxy.

Pure parts: `parse_parent_url` (the flag), `connect_request` (the CONNECT head for a tunnel),
`parse_answer` (the parent's answer to it) and `for_parent` (an origin-form request head made
absolute-form, for plain HTTP). The async part, `proxy.parent_handshake.handshake`, runs on a
connection to the parent that `server.ProxyServer.dial` has opened: it sends the CONNECT, waits
for the answer and hands the socket to the tunnel's protocol. It is a module of its own so that
parsing the flag (`proxy.config`, and with it `awf run`'s own start) does not import asyncio.

The credentials of the URL exist only as the `Proxy-Authorization` value: `Parent`'s repr, its
`shown` text and every error message name the parent as `host:port`, never the user or password.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from proxy.errors import ConfigError, ConnectFailed, ConnectTimeout

FLAG = "--upstream-proxy"
MAX_ANSWER_HEAD = 16 * 1024
_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?")


class ParentFailed(ConnectFailed):
    """The parent proxy refused or failed: 502 connect_failed, its message logged as `note`."""


class ParentTimeout(ConnectTimeout):
    """The parent proxy did not connect or answer in time: 504 connect_timeout, noted."""


@dataclass(frozen=True, slots=True)
class Parent:
    """A parent proxy: where to dial it, and the `Proxy-Authorization` value to send (if any)."""

    host: str  # a name or an IP address (IPv6 without brackets)
    port: int
    authorization: bytes | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """`host:port` for messages: never the credentials."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        auth = ", with credentials" if self.authorization else ""
        return f"Parent({self.shown}{auth})"


def parse_parent_url(text: str) -> Parent:
    """`http://[user:pass@]host:port` to a Parent; ConfigError (one line, no password) else."""
    hint = "want http://[user:pass@]host:port"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise ConfigError(f"{FLAG}: not a URL; {hint}") from None
    if parts.scheme.lower() != "http":
        scheme = parts.scheme or "no scheme"
        raise ConfigError(f"{FLAG}: scheme {scheme!r} is not supported; {hint}")
    if not host:
        raise ConfigError(f"{FLAG}: the URL has no host; {hint}")
    if port is None or port == 0:
        raise ConfigError(f"{FLAG}: the URL has no port; {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{FLAG}: the URL must end after the port; {hint}")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if _HOST_RE.fullmatch(host) is None:
            raise ConfigError(f"{FLAG}: {host!r} is not a host name or IP address") from None
        host = host.lower().rstrip(".")
    auth: bytes | None = None
    if parts.username is not None or parts.password is not None:
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if not user or any(c in user + password for c in "\r\n\0") or ":" in user:
            raise ConfigError(f"{FLAG}: the URL's user name is empty or invalid")
        auth = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
    return Parent(host, port, auth)


def authority(host: str, port: int) -> bytes:
    """`host:port`, an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}".encode("ascii")


def connect_request(parent: Parent, host: str, port: int) -> bytes:
    """The CONNECT head that asks `parent` for a tunnel to host:port."""
    target = authority(host, port)
    lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
    if parent.authorization is not None:
        lines.append(b"Proxy-Authorization: " + parent.authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def for_parent(wire: bytes, parent: Parent, host: str, port: int) -> bytes:
    """An origin-form request head (`GET /p HTTP/1.1`...) as the parent wants it:
    absolute-form target, plus `Proxy-Authorization` when the URL had credentials."""
    line_end = wire.index(b"\r\n")
    method, _, rest = wire[:line_end].partition(b" ")
    path, _, version = rest.rpartition(b" ")
    target = authority(host, port)
    if port == 80:
        target = target[: target.rindex(b":")]
    origin = b"http://" + target
    line = b"%s %s%s %s\r\n" % (method, origin, path, version)
    if parent.authorization is not None:
        line += b"Proxy-Authorization: " + parent.authorization + b"\r\n"
    return line + wire[line_end + 2:]


def parse_answer(buf: bytes) -> tuple[int, str, int] | None:
    """(status, reason phrase, head length) of the parent's answer in `buf`, None while the
    head is incomplete; ConnectFailed if it is not an HTTP answer or too long."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_ANSWER_HEAD:
            raise ParentFailed("the parent proxy's answer head is too long")
        return None
    m = _STATUS_RE.match(buf, 0, buf.find(b"\r\n"))
    if m is None:
        raise ParentFailed("the parent proxy did not answer in HTTP")
    phrase = (m.group(2) or b"").decode("latin-1")[:80]
    phrase = "".join(c if c.isprintable() else "?" for c in phrase)
    return int(m.group(1)), phrase, end + 4
