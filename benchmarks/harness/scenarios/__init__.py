"""The comparison scenarios (direct call versus Pigeon); each returns figures for the report.

latency.py     accept latency versus provider latency, at a fixed arrival rate
outage.py      the sender (or SMS service) down for a while in the middle of a run
throughput.py  the highest sustainable accepted/s and delivered/s
common.py      what they share: fresh deployments, running a schedule, deliveries
"""
