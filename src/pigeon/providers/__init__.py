"""SMS providers: the :class:`SmsProvider` port and its adapters.

``port`` holds the interface and the value objects; ``twilio`` is the adapter
for Twilio's REST API (and for Pigeon's Twilio-compatible sandbox);
``signature`` implements Twilio's request signing, shared with the sandbox and
the status-callback endpoint.
"""

from pigeon.providers.port import ProviderReceipt, SmsMessage, SmsProvider

__all__ = ["ProviderReceipt", "SmsMessage", "SmsProvider"]
