"""The one error tree of awf. This module imports nothing from the project.

    AwfError                      raised on purpose; anything else is a bug
     +-- ConfigError              bad flags, files or values: exit 2, nothing started
     +-- FirewallError            the firewall could not be set up or proven: exit 125
     |    +-- NetfilterError      nft or netlink refused a change
     |    +-- DockerError         the Docker engine refused or failed
     |    +-- SandboxError        a namespace, process or self-test failed
     +-- RequestError             peer-facing: one HTTP answer on one connection, never an exit
          +-- BadRequest, HeadTooLarge, HostMismatch       400
          +-- HeadTimeout                                  408
          +-- DnsFailure, ConnectFailed                    502
          +-- ConnectTimeout                               504
          +-- DeniedAddress, SelfConnection                403
"""

from __future__ import annotations

from typing import ClassVar


class AwfError(Exception):
    """An error awf raises on purpose. Any other exception is a bug."""

    exit_code: ClassVar[int] = 1


class ConfigError(AwfError):
    """A bad flag, file or value; nothing was started."""

    exit_code = 2


class FirewallError(AwfError):
    """A protection could not be set up or proven; the command never ran unprotected."""

    exit_code = 125


class NetfilterError(FirewallError):
    pass


class DockerError(FirewallError):
    pass


class SandboxError(FirewallError):
    pass


class RequestError(AwfError):
    """Peer-facing: answered with `status` and `X-Awf-Reason: reason`, never an exit."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "bad_request"


class BadRequest(RequestError):
    pass


class HeadTooLarge(BadRequest):
    pass


class HostMismatch(RequestError):
    reason = "host_mismatch"


class HeadTimeout(RequestError):
    status, reason = 408, "head_timeout"


class DnsFailure(RequestError):
    status, reason = 502, "dns_failure"


class DeniedAddress(RequestError):
    status, reason = 403, "denied_address"


class ConnectFailed(RequestError):
    status, reason = 502, "connect_failed"


class ConnectTimeout(RequestError):
    status, reason = 504, "connect_timeout"


class SelfConnection(RequestError):
    status, reason = 403, "self_connection"
