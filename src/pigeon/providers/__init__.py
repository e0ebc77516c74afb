"""SMS providers: the :class:`SmsProvider` port and its adapters.

::

    port.py           the interface, its value objects, ReconcilingProvider (find_sent)
                      (ProviderOutcomeUnknown, re-exported here, lives in pigeon.errors)
    twilio.py         the adapter for Twilio's REST API (and Pigeon's sandbox)
    twilio_errors.py  Twilio error codes -> retry / slow down / give up
    twilio_lookup.py  finding a sent message through Twilio's list API
    signature.py      Twilio's request signing (shared with the sandbox and the API)
    retry_after.py    the Retry-After header
    breaker.py        CircuitBreaker
    failover.py       FailoverProvider: ordered providers, each behind a breaker
    pacing.py         PacedProvider: a token bucket per sender, shared across processes
    factory.py        build_sms_provider() and parse_providers() for bootstrap
"""

from pigeon.errors import ProviderOutcomeUnknown
from pigeon.providers.port import (
    ProviderReceipt,
    ReconcilingProvider,
    SmsMessage,
    SmsProvider,
    supports_find_sent,
)

__all__ = [
    "ProviderOutcomeUnknown",
    "ProviderReceipt",
    "ReconcilingProvider",
    "SmsMessage",
    "SmsProvider",
    "supports_find_sent",
]
