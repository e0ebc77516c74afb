"""Issue 9's targets in the pipeline benchmark: every figure judged as a ratio to E."""

from __future__ import annotations

from typing import Any

from pipebench.echo_targets import echo_unit, evaluate


def _results(accepted: float, drain_rate: float, pigeon_cpu: float) -> dict[str, Any]:
    return {
        "sqlite": {
            "echo": {
                "accept_max": {
                    "accepted_per_s": 2000.0,
                    "cpu_percent_of_one_core": {"echo": 100.0, "loadgen": 60.0},
                }
            },
            "split": {
                "accept_max": {"accepted_per_s": accepted},
                "drain": {
                    "sms_per_s": drain_rate,
                    "cpu_percent_of_one_core": {
                        "api": pigeon_cpu,
                        "sandbox": 50.0,
                        "loadgen": 2.0,
                        "other": 1.0,
                    },
                },
            },
        }
    }


def test_e_and_the_cpu_of_one_echo_request_come_from_the_echo_run() -> None:
    """E is the echo's max accepted/s; one request costs its CPU divided by E."""
    assert echo_unit(_results(1.0, 1.0, 1.0), "sqlite") == (2000.0, 1.0 / 2000.0)


def test_each_target_is_a_ratio_to_e_and_the_sandbox_is_not_pigeons_cpu() -> None:
    """0.4 E accepted is met, 0.39 E is not; CPU per SMS counts Pigeon's processes only."""
    # Given 800/s accepted (0.4 E), a drain of 240 SMS/s (0.12 E) at 96 % of a core
    verdicts, _ = evaluate(_results(800.0, 240.0, 96.0))
    by_target = {v["target"][:2]: v for v in verdicts}
    assert by_target["1."]["met"]
    # 0.96 cores / 240 SMS/s = 4 ms = 8 echo requests of 0.5 ms: just met (sandbox excluded)
    cpu = next(v for v in verdicts if v["target"].startswith("5."))
    assert cpu["met"], cpu
    assert "8.0 echo" in cpu["measured"]

    # When a little short of each
    verdicts, _ = evaluate(_results(780.0, 230.0, 100.0))
    assert not any(v["met"] for v in verdicts)


def _drain(rate: float, **extra: Any) -> dict[str, Any]:
    return {"sms_per_s": rate, "cpu_percent_of_one_core": {"run": 50.0}, **extra}


def _single(**by_name: dict[str, Any]) -> dict[str, Any]:
    results = _results(1.0, 1.0, 1.0)
    results["sqlite"]["single"] = by_name
    return results


def _verdict(results: dict[str, Any], number: str, topology: str = "single") -> dict[str, Any]:
    verdicts, _ = evaluate(results)
    return next(v for v in verdicts if v["target"].startswith(number) and v["topology"] == topology)


def test_memory_is_judged_by_pss_for_pigeon_run_only() -> None:
    """Target 7 is pigeon run's: PSS (shared pages once) decides, RSS is shown beside it."""
    memory = {"run": 140.0, "sandbox": 130.0}
    drain = _drain(1000.0, count=20_000, rss_mb_after={"run": 210.0}, pss_mb_after=memory)
    verdict = _verdict(_single(drain=drain), "7.")
    assert verdict["met"], verdict
    assert "PSS 140 MB (RSS summed 210 MB)" in verdict["measured"]
    drain["pss_mb_after"] = {"run": 151.0}
    assert not _verdict(_single(drain=drain), "7.")["met"]
    # a split deployment's memory is not target 7's
    split = _results(1.0, 1.0, 1.0)
    split["sqlite"]["split"]["drain"].update(count=20_000, pss_mb_after={"api": 99.0})
    verdicts, _ = evaluate(split)
    assert not [v for v in verdicts if v["target"].startswith("7.")]


def test_the_history_drain_is_judged_against_the_fresh_drain_of_the_same_run() -> None:
    """Target 9: >= 0.9 x the fresh drain, with at least a million notifications held."""

    def history(rate: float, held: int) -> dict[str, Any]:
        return _drain(rate, history={"rows_now": {"notifications": held}})

    met = _verdict(_single(drain=_drain(1000.0), drain_history=history(900.0, 1_000_000)), "9.")
    assert met["met"], met
    assert "0.90 x" in met["measured"]
    slow = _single(drain=_drain(1000.0), drain_history=history(890.0, 1_000_000))
    assert not _verdict(slow, "9.")["met"]
    small = _single(drain=_drain(1000.0), drain_history=history(1000.0, 999_999))
    assert not _verdict(small, "9.")["met"]


def test_idle_judges_pigeons_processes_and_only_shows_the_broker() -> None:
    """Target 6 is about Pigeon's processes; the broker's CPU is shown, not judged."""

    def idle(cpu: dict[str, float]) -> dict[str, Any]:
        return {"cpu_percent_of_one_core": cpu, "pickup_after_202_ms": {"max_ms": 8.0}}

    quiet = _verdict(_single(idle=idle({"run": 0.4, "kafka": 2.3, "sandbox": 3.0})), "6.")
    assert quiet["met"], quiet
    assert "kafka 2.3 %" in quiet["measured"]
    assert not _verdict(_single(idle=idle({"run": 1.2, "kafka": 0.1})), "6.")["met"]


def test_idle_is_judged_per_process_where_each_was_measured() -> None:
    """Target 6 says every Pigeon process: pigeon run's API and worker child are judged
    apart when the run measured them apart (the tree's sum is only shown)."""
    tree = {"run": 1.4, "kafka": 0.5}
    each = {"run[100]": 0.6, "run[101]": 0.8, "kafka[7]": 2.0}
    idle = {
        "cpu_percent_of_one_core": tree,
        "cpu_percent_per_process": each,
        "pickup_after_202_ms": {"max_ms": 8.0},
    }
    verdict = _verdict(_single(idle=idle), "6.")
    assert verdict["met"], verdict
    assert "max 0.80 %" in verdict["measured"]
    busy = {**idle, "cpu_percent_per_process": {"run[100]": 0.6, "run[101]": 1.1}}
    assert not _verdict(_single(idle=busy), "6.")["met"]


def _steady(stack: str, rate: float, p99_ms: float) -> dict[str, Any]:
    results = _results(800.0, 240.0, 96.0)  # E = 2,000/s
    steady = {
        "rate_per_s": rate,
        "seconds": 10.0,
        "first_accept_to_last_sms_seconds": 10.5,
        "accept_latency": {"p99_ms": p99_ms},
    }
    results.setdefault(stack, {}).setdefault("split", {})["steady"] = steady
    return results


def _steady_verdict(results: dict[str, Any], stack: str) -> dict[str, Any]:
    verdicts, _ = evaluate(results)
    return next(v for v in verdicts if v["stack"] == stack and v["target"].startswith("4. steady"))


def test_steady_is_judged_at_0_1_e_embedded_and_at_0_6_of_that_on_kafka() -> None:
    """Target 8 asks Kafka + PostgreSQL for target 4 at >= 0.6 x the embedded figures: its
    steady state is judged at 0.06 E; the embedded stack's at 0.1 E; a slower run is not."""
    assert _steady_verdict(_steady("sqlite", 200.0, 20.0), "sqlite")["met"]
    assert not _steady_verdict(_steady("sqlite", 120.0, 20.0), "sqlite")["met"]
    assert not _steady_verdict(_steady("sqlite", 200.0, 26.0), "sqlite")["met"]
    assert _steady_verdict(_steady("kafka-postgres", 120.0, 20.0), "kafka-postgres")["met"]
    assert not _steady_verdict(_steady("kafka-postgres", 60.0, 20.0), "kafka-postgres")["met"]
