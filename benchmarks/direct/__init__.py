"""The direct-call baseline the benchmark (``benchmarks/bench.py``) compares Pigeon with.

It is not part of the product.

    caller ─POST─▶ notification service ─POST─▶ SMS service ─▶ provider (the sandbox)
                   (waits)                      (waits)

Every request waits for the whole chain: the caller's response time includes
the provider's, and a request that arrives while the SMS service is down fails
and is gone. Both services reuse Pigeon's own pieces (request schema,
``Notification.new_sms`` validation, problem responses, ``TwilioSmsProvider``
with Pigeon's provider settings, the same FastAPI + uvicorn stack) so that only
the architecture differs.

    python -m direct sms-service --port 9001
    python -m direct notification-service --port 9000 --sms-url http://127.0.0.1:9001 --api-key K

(with ``benchmarks/`` on ``PYTHONPATH``; the provider comes from ``PIGEON_*`` settings.)
"""
