"""``pigeon bench``: Pigeon against a direct-call design, measured on this machine.

options.py     what a run does (scenarios, designs, rates, durations; ``--quick``)
loadgen.py     the open-loop load generator (latency from the intended send time)
stats.py       HDR histograms and exact nearest-rank percentiles
client.py      the requests both designs answer, tagged to match deliveries
processes.py   processes started and stopped by PID; CPU per process
cluster.py     Pigeon as processes (also used by ``benchmarks/bench_pipeline.py``)
stacks.py      SQLite, or Kafka (a Tansu broker) + a fresh PostgreSQL schema
designs.py     the two designs as deployments; finding the direct baseline
sandbox_client.py  faults, counters and the inbox of the sandbox provider
scenarios/     latency, outage and throughput
targets.py     the issue's targets checked against the figures
report/        summary.md, results.json and PNG charts
progress.py    the live progress line on stderr
machine.py     cores, platform and versions reported with every figure
runner.py      one run from options to report
command.py     the ``pigeon bench`` command (imports the rest lazily)

Nothing here is imported by the rest of Pigeon; matplotlib and hdrhistogram
(the ``bench`` extra) are needed only when a benchmark runs.
"""
