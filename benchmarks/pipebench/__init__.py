"""Helpers of ``benchmarks/bench_pipeline.py``; see ``benchmarks/README.md``.

cluster.py    Pigeon as real processes on 127.0.0.1: start, wait, measure CPU, stop by PID
load.py       the load generators (closed loop, open loop) and exact percentiles
scenarios.py  the measurements: accept throughput, accept latency, end to end
report.py     environment, targets and the table
"""
