"""The pipeline scenarios of ``benchmarks/bench.py``; see ``benchmarks/README.md``.

load.py          the load generators (closed loop, open loop) over :mod:`harness.loadgen`
scenarios.py     the measurements: accept throughput, accept latency, drain, steady, idle,
                 scale-out (clusters from :mod:`harness.cluster`)
history.py       a store with a long history, for drain_history
report.py        targets, the stack comparison and the tables
echo_targets.py  the issue's targets as ratios to the bare echo's E
"""
