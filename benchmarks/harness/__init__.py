"""The harness Pigeon's tests and its benchmark share (not shipped in the wheel).

It starts Pigeon as real processes from a source checkout, drives them and
reports what it measured; an installed user has no use for it (the benchmark
needs ``benchmarks/direct``, the tests need the tests), so it lives beside
the package, not in it. ``benchmarks/bench.py`` is the one command.

options.py     what a comparison run does (scenarios, designs, rates, durations; quick)
loadgen.py     the open-loop load generator (latency from the intended send time)
stats.py       HDR histograms and exact nearest-rank percentiles
client.py      the requests both designs answer, tagged to match deliveries
processes.py   processes started and stopped by PID; CPU per process; free ports
cluster.py     Pigeon as processes, topology read from ``pigeon.bootstrap``
stacks.py      SQLite, or Kafka (a Tansu broker) + a fresh PostgreSQL schema
designs.py     the direct-call design and Pigeon as deployments
sandbox_client.py  faults, counters and the inbox of the sandbox provider
scenarios/     latency, outage and throughput (direct call versus Pigeon)
targets.py     the targets checked against the comparison's figures
report/        summary.md, results.json and PNG charts: the one report writer
progress.py    the live progress line on stderr
machine.py     cores, platform and versions reported with every figure
runner.py      the uvloop runner, SIGTERM handling, one comparison run

matplotlib and hdrhistogram come with the ``bench`` extra (and ``dev``).
"""
