"""The HA death decision (zmn/services/ha/judge.py): both signs, or the host lives."""

from __future__ import annotations

from zmn.services.ha.judge import HostWatch

PS1, PS2 = "1" * 32, "2" * 32
DETECT, HB = 20.0, 10.0


def watch(*storages: str) -> HostWatch:
    w = HostWatch("h" * 32, last_answer=0.0)
    w.use_storages(set(storages))
    return w


def test_an_answering_agent_is_never_dead() -> None:
    w = watch(PS1)
    w.heartbeat(PS1, 5, 0.0)
    w.answered(100.0)
    assert not w.verdict(110.0, DETECT, HB).dead


def test_detect_timeout_without_heartbeat_loss_is_no_death() -> None:
    w = watch(PS1)
    for t in range(0, 60, 2):  # the agent is silent, its heartbeat keeps moving
        w.heartbeat(PS1, t, float(t))
        v = w.verdict(float(t), DETECT, HB)
        assert not v.dead, v.reason
    assert "changed" in w.verdict(60.0, DETECT, HB).reason


def test_heartbeat_loss_before_the_detect_timeout_is_no_death() -> None:
    w = watch(PS1)
    w.heartbeat(PS1, 7, 0.0)
    assert not w.verdict(15.0, DETECT, HB).dead  # heartbeat still 15 s, agent lost 15 s < 20 s
    assert w.verdict(20.0, DETECT, HB).dead


def test_every_shared_storage_must_have_stopped() -> None:
    w = watch(PS1, PS2)
    w.heartbeat(PS1, 7, 0.0)
    w.heartbeat(PS2, 3, 0.0)
    w.heartbeat(PS2, 4, 15.0)  # still written on PS2
    v = w.verdict(21.0, DETECT, HB)
    assert not v.dead and PS2 in v.reason
    assert w.verdict(25.0, DETECT, HB).dead


def test_no_shared_storage_or_no_reading_means_alive() -> None:
    assert not watch().verdict(1000.0, DETECT, HB).dead  # local storage only
    v = watch(PS1).verdict(1000.0, DETECT, HB)  # no live peer could read the heartbeat
    assert not v.dead and "not read" in v.reason


def test_a_missing_heartbeat_file_counts_as_still() -> None:
    w = watch(PS1)
    w.heartbeat(PS1, None, 0.0)
    w.heartbeat(PS1, None, 12.0)
    assert w.verdict(20.0, DETECT, HB).dead


def test_the_heartbeat_clock_restarts_after_the_agent_answered() -> None:
    w = watch(PS1)
    w.heartbeat(PS1, 7, 0.0)  # still since 0 ...
    w.answered(30.0)  # ... but the agent was back at 30: what was seen before is forgotten
    w.heartbeat(PS1, 7, 45.0)
    v = w.verdict(51.0, DETECT, HB)  # lost 21 s, yet the counter is seen still only 6 s
    assert not v.dead and "changed 6.0 s ago" in v.reason
    assert w.verdict(55.0, DETECT, HB).dead
