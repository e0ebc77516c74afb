"""PNG charts of a run, drawn with matplotlib's Agg canvas (no display, no global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.options import ordered_runs, run_label

COLOURS = {
    "direct": "tab:red",
    "pigeon": "tab:blue",
    "pigeon-sqlite": "tab:blue",
    "pigeon-kafka-postgres": "tab:green",
}
DPI = 110


def plain() -> FuncFormatter:
    """Tick labels as plain numbers (1000, not 10^3); one per axis, as matplotlib wants."""
    return FuncFormatter(lambda value, _pos: f"{value:g}")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def latency_chart(scenario: dict[str, Any], path: Path) -> Path:
    """p50 and p99 accept latency per design versus provider latency (log scale)."""
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    latencies = sorted({s["provider_latency_ms"] for s in scenario["steps"]})
    for design in ordered_runs(s["design"] for s in scenario["steps"]):
        steps = {s["provider_latency_ms"]: s for s in scenario["steps"] if s["design"] == design}
        xs = [i for i, lat in enumerate(latencies) if lat in steps]
        for key, style in (("p50_ms", ":"), ("p95_ms", "--"), ("p99_ms", "-")):
            ys = [steps[latencies[i]]["latency_ms"].get(key, float("nan")) for i in xs]
            ax.plot(
                xs,
                ys,
                style,
                marker="o",
                color=COLOURS.get(design),
                label=f"{run_label(design)} {key.removesuffix('_ms')}",
            )
    ax.set_xticks(range(len(latencies)), [f"+{lat:g} ms" for lat in latencies])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plain())
    ax.set_xlabel("provider latency")
    ax.set_ylabel("accept latency (ms, log scale)")
    ax.set_title(f"Accept latency at {scenario['rate_per_s']:g} requests/s (open loop)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def _outage_panel(ax: Axes, design: str, result: dict[str, Any]) -> None:
    line = result["timeline"]
    for key, colour, label in (
        ("ok", "tab:green", "answered 2xx /s"),
        ("failed", "tab:red", "failed /s"),
        ("delivered", "tab:blue", "delivered /s"),
    ):
        ax.plot(line["second"], line[key], color=colour, label=label, drawstyle="steps-post")
    events = result["events_s"]
    ax.axvspan(events["stopped_at"], events["restarted_at"], color="grey", alpha=0.25)
    ax.axvline(events["ready_at"], color="grey", linestyle="--", linewidth=1)
    drain = result["time_to_drain_s"]
    if drain is not None and result["backlog_at_restart"]:
        ax.axvline(events["restarted_at"] + drain, color="tab:blue", linestyle=":", linewidth=1)
    ax.set_title(
        f"{run_label(design)}: lost {result['lost']} of {result['sent']}, "
        f"failed {result['failed']}",
        fontsize="medium",
    )
    ax.set_ylabel("per second")
    ax.grid(True, alpha=0.3)


def outage_chart(scenario: dict[str, Any], path: Path) -> Path:
    """Per design: answered, failed and delivered per second; the outage shaded."""
    designs = ordered_runs(scenario["designs"])
    fig = Figure(figsize=(8, 2.6 * len(designs) + 0.6), layout="constrained")
    axes = fig.subplots(len(designs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, design in zip(axes, designs, strict=True):
        _outage_panel(ax, design, scenario["designs"][design])
    axes[0].legend(fontsize="small", loc="upper right")
    axes[-1].set_xlabel("seconds since the start of the run (grey: sender down; dashed: ready)")
    fig.suptitle(f"Outage at {scenario['rate_per_s']:g} requests/s")
    return _save(fig, path)


def _log2_axes(ax: Axes) -> None:
    """Doubling steps evenly spaced, with plain numbers on the ticks."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(plain())
    ax.xaxis.set_minor_formatter(plain())


def throughput_chart(scenario: dict[str, Any], path: Path) -> Path:
    """Per offered rate: p99 accept latency against the SLO, and SMS delivered per second.

    Open loop, accepted/s follows the offered rate while the requests succeed;
    overload shows as latency, so the left panel is where the limit is seen.
    """
    fig = Figure(figsize=(10, 4.3), layout="constrained")
    latency_ax, delivered_ax = fig.subplots(1, 2)
    rates = [s["rate_per_s"] for r in scenario["designs"].values() for s in r["steps"]]
    low, top = min(rates, default=1.0), max(rates, default=1.0)
    for design in ordered_runs(scenario["designs"]):
        result = scenario["designs"][design]
        steps = result["steps"]
        offered = [s["rate_per_s"] for s in steps]
        colour = COLOURS.get(design)
        p99 = [s["latency_ms"].get("p99_ms", float("nan")) for s in steps]
        latency_ax.plot(offered, p99, "-o", color=colour, label=f"{run_label(design)} p99")
        delivered_ax.plot(
            offered,
            [s["delivered_per_s"] for s in steps],
            "-s",
            color=colour,
            label=run_label(design),
        )
        bad = [(s["rate_per_s"], p) for s, p in zip(steps, p99, strict=True) if not s["sustained"]]
        latency_ax.scatter(
            [x for x, _ in bad], [y for _, y in bad], marker="x", s=80, color="black", zorder=3
        )
    latency_ax.axhline(scenario["slo_ms"], color="grey", linestyle="--", linewidth=1, label="SLO")
    latency_ax.set_yscale("log")
    latency_ax.yaxis.set_major_formatter(plain())
    latency_ax.yaxis.set_minor_formatter(plain())
    latency_ax.set_ylabel("p99 accept latency (ms, log scale)")
    latency_ax.set_title("Accept latency (x: not sustained)", fontsize="medium")
    diagonal = [low * (top / low) ** (i / 50) for i in range(51)]  # straight on any x scale
    delivered_ax.plot(diagonal, diagonal, color="grey", linewidth=0.8, label="offered")
    delivered_ax.set_ylabel("SMS delivered per second")
    delivered_ax.set_title("Delivered per second during the window", fontsize="medium")
    for ax in (latency_ax, delivered_ax):
        if top >= 4 * low:
            _log2_axes(ax)
        ax.set_xlabel("offered requests/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Throughput with the provider adding {scenario['provider_latency_ms']:g} ms")
    return _save(fig, path)


CHARTS = {
    "latency": ("latency.png", latency_chart),
    "outage": ("outage.png", outage_chart),
    "throughput": ("throughput.png", throughput_chart),
}


def draw_charts(folder: Path, scenarios: dict[str, Any]) -> list[Path]:
    """One PNG per scenario that ran without error."""
    drawn = []
    for name, scenario in scenarios.items():
        if name in CHARTS and "error" not in scenario:
            filename, draw = CHARTS[name]
            drawn.append(draw(scenario, folder / filename))
    return drawn
