"""What the scenarios make of the runs: losses, drain time, sustained rates and the targets."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.bench.bench_samples import (
    EVENTS,
    arrivals_for,
    outage_run,
    throughput_step,
)

from harness.options import BenchOptions
from harness.scenarios.outage import summarize_outage
from harness.scenarios.throughput import conclude, judge, next_rate, step_figures
from harness.targets import evaluate


def test_pigeon_accepts_everything_during_the_outage_and_loses_nothing() -> None:
    """All 100 answered 202 and all delivered: nothing lost, 30 waited for the restart."""
    run, found = outage_run("pigeon")
    result = summarize_outage(run, found, EVENTS)
    counts = (result["sent"], result["accepted"], result["failed"], result["lost"])
    assert counts == (100, 100, 0, 0)
    assert result["accepted_not_delivered"] == 0
    assert result["backlog_at_restart"] == 30
    # the last of the 30 (seq 59) arrived 6.5 + 0.29 s after the start, the restart was at 6 s
    assert result["time_to_drain_s"] == pytest.approx(0.79)
    assert result["time_to_drain_from_ready_s"] == pytest.approx(0.29)
    assert result["sender_start_s"] == pytest.approx(0.5)
    assert result["during_outage"]["sent"] == 36  # due from 3.0 s to 6.5 s inclusive


def test_the_direct_design_fails_and_loses_the_requests_sent_while_it_is_down() -> None:
    """35 requests due while the SMS service is down fail, and their SMS never go out."""
    run, found = outage_run("direct")
    result = summarize_outage(run, found, EVENTS)
    assert (result["accepted"], result["failed"], result["lost"]) == (65, 35, 35)
    assert result["accepted_not_delivered"] == 0
    assert result["backlog_at_restart"] == 0
    assert result["time_to_drain_s"] == 0.0
    assert result["time_to_drain_from_ready_s"] is None


def test_a_message_that_never_arrives_is_lost_and_the_drain_never_ends() -> None:
    """One accepted message missing from the inbox: lost 1, time to drain unknown (None)."""
    run, found = outage_run("pigeon")
    del found.times[42]
    result = summarize_outage(run, found, EVENTS)
    assert result["lost"] == 1
    assert result["accepted_not_delivered"] == 1
    assert result["time_to_drain_s"] is None


def test_the_outage_timeline_bins_requests_and_deliveries_per_second() -> None:
    """Per second: 10 requests each; deliveries pile up in the second after the restart."""
    run, found = outage_run("pigeon")
    line = summarize_outage(run, found, EVENTS)["timeline"]
    assert sum(line["ok"]) == 100
    assert line["ok"][:10] == [10] * 10
    assert sum(line["delivered"]) == 100
    assert line["delivered"][6] == max(line["delivered"])


def test_a_step_is_sustained_when_enough_succeed_within_the_slo(options: BenchOptions) -> None:
    """All 2xx at 4 ms: sustained; half failing: not; every accepted SMS delivered: keeps up."""
    good = throughput_step(50)
    step = step_figures(good, arrivals_for(good, 1.0), options)
    assert step["accepted_per_s"] == pytest.approx(50)
    assert step["delivered_fraction"] == pytest.approx(1.0)
    assert step["end_to_end_ms"]["p50_ms"] == pytest.approx(200)
    assert (step["sustained"], step["delivery_keeps_up"]) == (True, True)
    bad = throughput_step(50, ok_every=2)
    assert not step_figures(bad, arrivals_for(bad, 1.0), options)["sustained"]


def test_delivery_that_falls_behind_does_not_keep_up(options: BenchOptions) -> None:
    """Accepted at 100/s but only half delivered by the end: sustained, yet not keeping up."""
    run = throughput_step(100)
    step = step_figures(run, arrivals_for(run, 0.5), options)
    assert step["sustained"]
    assert not step["delivery_keeps_up"]


def test_a_slow_step_is_not_sustained(options: BenchOptions) -> None:
    """A p99 over the SLO fails the step even when every answer is 2xx."""
    step: dict[str, Any] = {
        "ok_fraction": 1.0,
        "latency_ms": {"p99_ms": options.slo_ms + 1},
        "delivered_fraction": 1.0,
    }
    assert judge(step, options) == (False, True)


def test_the_search_doubles_until_a_failure_then_bisects() -> None:
    """25 -> 50 -> 100 (fails) -> 75; a first failure halves instead."""
    assert next_rate(25, good=25, bad=None) == 50
    assert next_rate(100, good=50, bad=100) == 75
    assert next_rate(25, good=None, bad=25) == 12.5


def test_the_conclusion_takes_the_highest_sustained_step(options: BenchOptions) -> None:
    """Steps at 25, 50 (sustained) and 100 (not): sustainable 50/s, first failure 100/s."""
    steps = []
    for rate, ok_every in ((100, 2), (25, 0), (50, 0)):
        run = throughput_step(rate, ok_every=ok_every)
        steps.append(step_figures(run, arrivals_for(run, 1.0), options))
    result = conclude(steps)
    assert result["sustainable_rate_per_s"] == 50
    assert result["sustainable_accepted_per_s"] == pytest.approx(50)
    assert result["first_failed_rate_per_s"] == 100
    assert [s["rate_per_s"] for s in result["steps"]] == [25, 50, 100]


def test_the_targets_are_judged_on_the_measured_figures(report: dict[str, Any]) -> None:
    """7.5 ms vs 205 ms is 3.7 % (met); 0 lost; drained in 0.8 s; 100/s vs 50/s is 2x (missed)."""
    verdicts = {t["name"]: t for t in report["targets"]}
    assert verdicts["accept latency p99"]["met"] is True
    assert "3.7%" in verdicts["accept latency p99"]["measured"]
    assert verdicts["outage: lost"]["met"] is True
    assert verdicts["outage: drain"]["met"] is True
    assert verdicts["sustainable accepted/s"]["met"] is False
    assert "2.00x" in verdicts["sustainable accepted/s"]["measured"]


def test_targets_of_scenarios_that_did_not_run_are_not_judged() -> None:
    """No scenario, or a failed one: every target is 'not measured' (None), never a pass."""
    targets = evaluate({"latency": {"error": "RuntimeError: boom"}})
    assert [t.met for t in targets] == [None, None, None, None]


def test_options_refuse_an_outage_longer_than_its_run() -> None:
    """The sender must be back before the run ends."""
    with pytest.raises(ValueError, match="outage"):
        BenchOptions(outage_run=10, outage_at=5, outage_length=6)


def test_options_refuse_unknown_scenarios_and_designs() -> None:
    """A typo is named instead of silently running nothing."""
    with pytest.raises(ValueError, match="unknown scenario 'latncy'"):
        BenchOptions(scenarios=("latncy",))
    with pytest.raises(ValueError, match="unknown design"):
        BenchOptions(designs=("kafka",))


def test_quick_options_are_short_and_take_overrides() -> None:
    """--quick shortens every phase; explicit options still win."""
    quick = BenchOptions.quick(rate=7.0)
    assert quick.rate == 7.0
    assert quick.duration < BenchOptions().duration
    assert quick.outage_run < BenchOptions().outage_run
