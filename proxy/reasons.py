"""Reason tokens of the access log and `X-Awf-Reason` (docs/proxy.md §6), each with its status.

This table is the only place a reason's status is written: `Reason.status` reads it, and every
`RequestError` subclass names its reason, so its status is derived from here too.
"""

from __future__ import annotations

from enum import StrEnum

NO_ANSWER = 0
"""The status logged for a refusal that gets no HTTP answer (TLS without SNI: the connection is
closed, there is no HTTP to answer in), or for non-TLS bytes on a bumped connection."""


class Reason(StrEnum):
    BAD_REQUEST = "bad_request"
    HOST_MISMATCH = "host_mismatch"
    IP_LITERAL = "ip_literal"
    DOMAIN_BLOCKED = "domain_blocked"
    DOMAIN_NOT_ALLOWED = "domain_not_allowed"
    SCHEME_DENIED = "scheme_denied"
    PORT_DENIED = "port_denied"
    SELF_CONNECTION = "self_connection"
    DNS_FAILURE = "dns_failure"
    DENIED_ADDRESS = "denied_address"
    CONNECT_FAILED = "connect_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    OVERLOADED = "overloaded"
    HEAD_TIMEOUT = "head_timeout"
    RESPONSE_TIMEOUT = "response_timeout"
    BAD_RESPONSE = "bad_response"
    NO_SNI = "no_sni"
    # SSL bump and --allow-urls (docs/proxy.md §11)
    URL_NOT_ALLOWED = "url_not_allowed"
    MISDIRECTED = "misdirected"
    UPSTREAM_TLS_FAILED = "upstream_tls_failed"
    NOT_TLS = "not_tls"
    NAME_TOO_LONG = "name_too_long"  # DNS: a label over 63 or a name over --dns-max-name-length
    DNS_BUDGET = "dns_budget"  # DNS: too many distinct names under one allowed name per minute

    @property
    def status(self) -> int:
        return STATUS[self]


STATUS: dict[Reason, int] = {
    Reason.BAD_REQUEST: 400,
    Reason.HOST_MISMATCH: 400,
    Reason.IP_LITERAL: 403,
    Reason.DOMAIN_BLOCKED: 403,
    Reason.DOMAIN_NOT_ALLOWED: 403,
    Reason.SCHEME_DENIED: 403,
    Reason.PORT_DENIED: 403,
    Reason.SELF_CONNECTION: 403,
    Reason.DNS_FAILURE: 502,
    Reason.DENIED_ADDRESS: 403,
    Reason.CONNECT_FAILED: 502,
    Reason.CONNECT_TIMEOUT: 504,
    Reason.OVERLOADED: 503,
    Reason.HEAD_TIMEOUT: 408,
    Reason.RESPONSE_TIMEOUT: 504,
    Reason.BAD_RESPONSE: 502,
    Reason.NO_SNI: NO_ANSWER,
    Reason.URL_NOT_ALLOWED: 403,
    Reason.MISDIRECTED: 421,
    Reason.UPSTREAM_TLS_FAILED: 502,
    Reason.NOT_TLS: NO_ANSWER,
    Reason.NAME_TOO_LONG: 403,  # DNS only: answered REFUSED, never an HTTP status
    Reason.DNS_BUDGET: 403,  # DNS only: answered REFUSED, never an HTTP status
}
