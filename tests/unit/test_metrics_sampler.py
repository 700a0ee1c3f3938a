"""The simulator's samples are taken at the ticks of its interval, at most a window of them."""

from __future__ import annotations

from zmn.services.metrics.sampler import ticks


def test_ticks_are_the_multiples_of_the_interval_since_the_last_sample() -> None:
    assert ticks(100.0, 131.5, 10.0, 60) == [110.0, 120.0, 130.0]
    assert ticks(110.0, 119.9, 10.0, 60) == []  # nothing due before the next multiple
    assert ticks(105.0, 110.0, 10.0, 60) == [110.0]  # a tick at `now` is due


def test_a_long_gap_gives_the_last_window_of_ticks_only() -> None:
    assert ticks(0.0, 1000.0, 1.0, 3) == [998.0, 999.0, 1000.0]


def test_a_host_and_its_vms_are_sampled_together_a_few_ticks_first_then_every_tick() -> None:
    from types import SimpleNamespace

    from zmn.services.metrics.sampler import FIRST_SAMPLES, SimulatedSampler
    from zmn.services.metrics.synthetic import SyntheticUsage

    got: list[tuple[str, str, float, dict[str, float]]] = []
    node = SimpleNamespace(started_at=0.0)
    sampler = SimulatedSampler(
        node,  # type: ignore[arg-type]
        SyntheticUsage(seed=1),
        lambda kind, uuid, at, values, _host: got.append((kind, uuid, at, values)),
    )
    hosts = [("h", 8, 16 * 2**30, None)]
    vms = [("h", "v", 2, 2**30, None)]
    sampler._sample(hosts, vms, 1000.0, 10.0, 60)
    assert [(k, u, at) for k, u, at, _ in got] == [
        (kind, uuid, at)
        for at in (980.0, 990.0, 1000.0)[-FIRST_SAMPLES:]
        for kind, uuid in (("vm", "v"), ("host", "h"))
    ]
    for at in (980.0, 990.0, 1000.0):  # the host's memory holds its VM's at every instant
        vm = next(v for k, _, t, v in got if k == "vm" and t == at)
        host = next(v for k, _, t, v in got if k == "host" and t == at)
        assert host["memoryUsed"] == int(vm["memoryUsed"] + 16 * 2**30 * 0.05)
    got.clear()
    sampler._sample(hosts, vms, 1100.0, 10.0, 60)  # asked again: every tick since
    assert [at for k, _, at, _ in got if k == "host"] == [1010.0 + 10 * i for i in range(10)]
