"""Helpers of ``benchmarks/bench_pipeline.py``; see ``benchmarks/README.md``.

cluster.py    Pigeon as real processes on 127.0.0.1 on either stack: start, wait, measure CPU,
              stop by PID (the stacks themselves are in pigeon.bench.stacks)
load.py       the load generators (closed loop, open loop) and exact percentiles
scenarios.py  the measurements: accept throughput, accept latency, end to end, scale-out
report.py     targets, the stack comparison and the tables
"""
