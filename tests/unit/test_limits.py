"""zmn.limits: parsing the api.* keys, the connection gate, the refusal summary."""

from __future__ import annotations

import logging
import resource

import pytest

from zmn.api.errors import InvalidArgument
from zmn.api.wire import FrameError
from zmn.core.config import BootConfig
from zmn.limits import ApiLimits, ConnectionGate, FrameBudget, RefusalLog, fit_descriptors


def limits_of(tmp_path, **values: str) -> ApiLimits:
    env = {f"ZMN_{k.upper().replace('.', '_')}": v for k, v in values.items()}
    return ApiLimits.from_config(BootConfig.load(tmp_path, env=env))


def test_defaults_and_overrides(tmp_path) -> None:
    assert limits_of(tmp_path) == ApiLimits()
    got = limits_of(tmp_path, **{"api.limit.connections": "5", "api.timeout.auth": "0"})
    assert got.connections == 5 and got.auth_timeout == 0
    assert got.anonymous_buffer == 4 * 65536


@pytest.mark.parametrize(
    ("key", "value"),
    [("api.limit.connections", "0"), ("api.limit.frame", "99999999999"), ("api.timeout.idle", "x")],
)
def test_a_bad_value_names_the_key_and_its_range(tmp_path, key: str, value: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        limits_of(tmp_path, **{key: value})
    assert key in err.value.message and "from" in err.value.message


def test_the_gate_keeps_a_reserve_for_the_local_admin() -> None:
    gate = ConnectionGate(ApiLimits(connections=2, admin_reserve=1))
    assert gate.admit("unix", False) and gate.admit("unix", False)
    assert not gate.admit("unix", False)
    assert gate.admit("unix", True)  # the reserve
    assert not gate.admit("unix", True)
    assert gate.admit("tcp", False)  # endpoints count apart
    gate.release("unix")
    assert not gate.admit("unix", False)  # the admin in the reserve still counts
    gate.release("unix")
    assert gate.admit("unix", False)


def test_connections_shrink_to_the_descriptors_the_process_may_open() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert fit_descriptors(ApiLimits(connections=100), endpoints=2).connections == 100
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2 * 100 + 16 + 256  # raised
        fitted = fit_descriptors(ApiLimits(connections=hard), endpoints=2)  # cannot fit
        assert 2 * fitted.connections + fitted.admin_reserve + 256 <= hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_refusals_become_one_summary_line(caplog: pytest.LogCaptureFixture) -> None:
    summary = RefusalLog(logging.getLogger("test.refusals"), interval=3600)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for i in range(5000):
            summary.note("bad frames", f"tcp:10.0.{i % 250}.{i % 7}:{i}")
        assert caplog.records == []
        summary.flush()
    assert len(caplog.records) == 1
    assert "5000 bad frames" in caplog.records[0].getMessage()
    assert summary.totals["bad frames"] == 5000


def test_the_frame_budget_admits_small_frames_always_and_large_ones_within_it() -> None:
    budget = FrameBudget(100_000)
    with budget.admit(1000), budget.admit(64 * 1024):
        assert budget.used == 0  # small frames do not count
    with budget.admit(70_000):
        assert budget.used == 70_000
        with pytest.raises(FrameError, match=r"api\.limit\.anonymous\.total"), budget.admit(70_000):
            pass
    assert budget.used == 0
