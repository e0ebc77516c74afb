"""Issue 9's targets in the pipeline benchmark: every figure judged as a ratio to E."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from pipebench.echo_targets import echo_unit, evaluate  # noqa: E402


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
