"""proxy/api/ratelimit.py: windows, refusals and their headers, with a fake clock."""

from __future__ import annotations

import pytest

from proxy.api.ratelimit import Limits, RateLimiter, Window
from proxy.errors import ConfigError


def test_no_limits_admits_everything() -> None:
    rl = RateLimiter(Limits())
    assert not Limits().enabled
    assert all(rl.admit(t).allowed for t in range(1000))


def test_rpm_refuses_then_recovers() -> None:
    rl = RateLimiter(Limits(rpm=3))
    assert [rl.admit(100.0 + i).allowed for i in range(4)] == [True, True, True, False]
    v = rl.admit(103.5)
    assert (v.allowed, v.window, v.limit) == (False, "rpm", 3)
    assert v.retry_after == 57  # the request at t=100 leaves the window at t=160
    assert v.headers() == [("Retry-After", "57"), ("X-RateLimit-Limit", "3"),
                           ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "57")]
    assert rl.admit(160.0).allowed
    assert not rl.admit(160.5).allowed


def test_refusals_are_not_counted() -> None:
    rl = RateLimiter(Limits(rpm=1))
    assert rl.admit(0.0).allowed
    for t in range(1, 59):
        assert not rl.admit(float(t)).allowed
    assert rl.admit(60.0).allowed


def test_rph() -> None:
    rl = RateLimiter(Limits(rph=2))
    assert rl.admit(0.0).allowed
    assert rl.admit(61.0).allowed
    v = rl.admit(120.0)
    assert (v.allowed, v.window) == (False, "rph")
    assert v.retry_after == 3600 - 120
    assert rl.admit(3600.0).allowed


def test_bytes_per_minute() -> None:
    rl = RateLimiter(Limits(bytes_pm=1000))
    assert rl.admit(0.0).allowed
    rl.count_bytes(0.5, 1500)  # one big exchange may go over...
    v = rl.admit(1.0)
    assert (v.allowed, v.window, v.limit, v.retry_after) == (False, "bytes_pm", 1000, 59)
    assert rl.admit(60.0).allowed  # ...the next request waits until it ages out


def test_window_wait_drops_oldest_buckets_first() -> None:
    w = Window(60.0)
    w.add(0.0, 5)
    w.add(10.0, 5)
    assert w.total(10.0) == 10
    assert w.wait(20.0, 10) == pytest.approx(40.0)
    assert w.wait(20.0, 6) == pytest.approx(40.0)
    assert w.wait(20.0, 5) == pytest.approx(50.0)
    assert w.wait(20.0, 11) == 0.0
    assert w.total(70.0) == 0


@pytest.mark.parametrize("field", ["rpm", "rph", "bytes_pm"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        Limits(**{field: 0})
