"""The chaos loop and its report: kills at an interval, recovery timing, and failed requests
attributed to the kill they followed."""

from __future__ import annotations

from unistack.cli.chaos import is_role, parse_time
from unistack.verify import chaos
from unistack.verify.load import Sample, stats


def _sample(action: str, started: float, error: str = "") -> Sample:
    return Sample(action, started, 0.01, error)


def test_failures_belong_to_the_kill_before_them() -> None:
    kills = [chaos.Kill("a", 10.0, 0.0), chaos.Kill("b", 20.0, 0.0)]
    samples = [
        _sample("x", 5.0, "early"),  # before any kill: counted in totals only
        _sample("x", 11.0),
        _sample("x", 12.0, "refused"),
        _sample("y", 13.5, "refused"),
        _sample("x", 21.0),
    ]
    report = chaos.summarize("pods", 10.0, 30.0, kills, samples)
    first, second = report.kills
    assert (first.sent, first.failed) == (3, 2)
    assert abs(first.disrupted - 3.51) < 1e-6  # the last failure ended 3.51 s after the kill
    assert (second.sent, second.failed, second.disrupted) == (1, 0, 0.0)
    assert (report.sent, report.failed) == (5, 3)
    assert report.errors == ["1 x x: early", "1 x x: refused", "1 x y: refused"]
    assert not report.ok


def test_errors_are_grouped_with_ids_masked() -> None:
    first, second = "0b8ab370-0e51-4c93-9641-8811bf4883ab", "10bf3de8-3d2b-482a-bd30-fefb3fd1a0c4"
    samples = [
        _sample("neutron.delete_network", 1.0, f"DELETE /networks/{first}: 404"),
        _sample("neutron.delete_network", 2.0, f"DELETE /networks/{second}: 404"),
        _sample("nova.list_flavors", 3.0, "GET /flavors: 503"),
    ]
    report = chaos.summarize("pods", 1.0, 5.0, [], samples)
    assert report.errors == [
        "2 x neutron.delete_network: DELETE /networks/{id}: 404",
        "1 x nova.list_flavors: GET /flavors: 503",
    ]


def test_stats_give_percentiles_per_action() -> None:
    samples = [Sample("a", 0.0, seconds / 1000) for seconds in range(1, 101)]
    samples.append(Sample("b", 0.0, 0.5, "boom"))
    rows = {row.action: row for row in stats(samples)}
    assert rows["a"].sent == 100 and rows["a"].failed == 0
    assert abs(rows["a"].p50 - 0.0505) < 1e-9 and abs(rows["a"].p95 - 0.096) < 1e-9
    assert (rows["b"].sent, rows["b"].failed) == (1, 1)


class Flaky:
    """A target whose victims recover once asked `heal_after` times; "v1" never does."""

    description = "flaky"

    def __init__(self, heal_after: int) -> None:
        self.heal_after = heal_after
        self.asked: dict[str, int] = {}

    def kill(self) -> str:
        victim = f"v{len(self.asked)}"
        self.asked[victim] = 0
        return victim

    def recovered(self, victim: str) -> bool:
        self.asked[victim] += 1
        return victim != "v1" and self.asked[victim] > self.heal_after


def test_the_loop_kills_at_the_interval_and_times_recovery() -> None:
    """Bounds come from the loop's own rules (0.1 s between checks, the timeout, the
    interval), not from how fast the machine is."""
    target = Flaky(heal_after=2)
    seen: list[chaos.Kill] = []
    report = chaos.run(
        target, interval=0.5, duration=1.2, recovery_timeout=0.6, on_kill=seen.append
    )
    assert [k.victim for k in report.kills][:2] == ["v0", "v1"]
    assert seen == report.kills
    v0, v1 = report.kills[:2]
    assert v0.recovery is not None and v0.recovery >= 0.2  # asked three times, 0.1 s apart
    assert target.asked["v0"] == 3
    assert v1.recovery is None  # gave up at the timeout and went on
    assert v1.at - v0.at >= 0.5  # never sooner than the interval
    assert not report.ok and report.sent == 0


def test_no_victim_is_an_error_in_the_report_not_a_crash() -> None:
    class Nothing:
        description = "nothing"

        def kill(self) -> str:
            raise chaos.ChaosError("no Ready pod matches 'x=y'")

        def recovered(self, victim: str) -> bool:
            return True

    report = chaos.run(Nothing(), interval=0.2, duration=0.5)
    assert report.kills == [] and "no Ready pod matches 'x=y'" in report.errors


def test_process_roles_come_from_the_command_line() -> None:
    base = ["python3", "-m", "unistack.cli.main"]
    assert is_role([*base, "serve", "agent", "--state-dir", "/s"], "agent")
    assert not is_role([*base, "serve", "agent", "--host", "2", "--state-dir", "/s"], "agent")
    assert is_role([*base, "serve", "apiserver", "--state-dir", "/s"], "apiserver")
    assert not is_role([*base, "serve", "apiserver"], "agent")
    assert not is_role([*base, "up"], "agent")


def test_lease_times_parse_with_microseconds() -> None:
    assert parse_time("2026-11-24T15:04:26.123456Z") - parse_time("2026-11-24T15:04:26Z") > 0.12
