"""The root of awf's error tree. Every package raises errors from this tree; each package defines
the errors only it raises (`netfilter.errors`, `containers.errors`).

    AwfError                      raised on purpose; anything else is a bug
     +-- ConfigError              bad flags, files or values: exit 2, nothing started
     +-- FirewallError            the firewall could not be set up or proven: exit 125
     |    +-- netfilter.errors.NetfilterError   nft or netlink refused a change
     |    +-- netfilter.errors.SandboxError     a namespace, process or self-test failed
     |    +-- containers.errors.DockerError     the Docker engine refused or failed
     +-- RequestError             peer-facing: one HTTP answer on one connection, never an exit;
          |                       its status is its reason's (proxy/reasons.py)
          +-- BadRequest, HeadTooLarge                     400 bad_request
          +-- HostMismatch                                 400 host_mismatch
          +-- HeadTimeout                                  408 head_timeout
          +-- DeniedAddress, SelfConnection, UrlNotAllowed 403
          +-- Misdirected                                  421
          +-- DnsFailure, ConnectFailed, BadResponse,      502
          |   UpstreamTlsFailed
          +-- ConnectTimeout, ResponseTimeout              504
"""

from __future__ import annotations

from typing import ClassVar

from proxy.reasons import Reason


class AwfError(Exception):
    """An error awf raises on purpose. Any other exception is a bug."""

    exit_code: ClassVar[int] = 1


class ConfigError(AwfError):
    """A bad flag, file or value; nothing was started."""

    exit_code = 2


class FirewallError(AwfError):
    """A protection could not be set up or proven; the command never ran unprotected."""

    exit_code = 125


class RequestError(AwfError):
    """Peer-facing: answered with `status` and `X-Awf-Reason: reason`, never an exit."""

    reason: ClassVar[Reason] = Reason.BAD_REQUEST
    status: ClassVar[int] = Reason.BAD_REQUEST.status  # always reason.status: set below

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.status = cls.reason.status


class BadRequest(RequestError):
    pass


class HeadTooLarge(BadRequest):
    pass


class HostMismatch(RequestError):
    reason = Reason.HOST_MISMATCH


class HeadTimeout(RequestError):
    reason = Reason.HEAD_TIMEOUT


class DnsFailure(RequestError):
    reason = Reason.DNS_FAILURE


class DeniedAddress(RequestError):
    reason = Reason.DENIED_ADDRESS


class ConnectFailed(RequestError):
    reason = Reason.CONNECT_FAILED


class ConnectTimeout(RequestError):
    reason = Reason.CONNECT_TIMEOUT


class SelfConnection(RequestError):
    reason = Reason.SELF_CONNECTION


class BadResponse(RequestError):
    """The upstream sent a response head or body framing we cannot forward safely."""

    reason = Reason.BAD_RESPONSE


class ResponseTimeout(RequestError):
    reason = Reason.RESPONSE_TIMEOUT


class UrlNotAllowed(RequestError):
    """SSL bump: the host is named by an --allow-urls pattern, and no pattern matches."""

    reason = Reason.URL_NOT_ALLOWED


class Misdirected(RequestError):
    """SSL bump: the inner request's Host is not the name the tunnel was opened for."""

    reason = Reason.MISDIRECTED


class UpstreamTlsFailed(RequestError):
    """SSL bump: the origin's certificate or handshake failed verification."""

    reason = Reason.UPSTREAM_TLS_FAILED
