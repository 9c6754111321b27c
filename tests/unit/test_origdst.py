"""original_destination() refusals that need no root; the real redirects are in tests/privileged."""

from __future__ import annotations

import errno
import socket

import pytest

from proxy.origdst import original_destination


def test_non_ip_socket_is_refused() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b, pytest.raises(OSError, match="not IP") as info:
        original_destination(a)
    assert info.value.errno == errno.EAFNOSUPPORT


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_unconnected_socket_has_no_original_destination(family: socket.AddressFamily) -> None:
    with socket.socket(family) as sock, pytest.raises(OSError, match=r"No such file|not connected"):
        original_destination(sock)
