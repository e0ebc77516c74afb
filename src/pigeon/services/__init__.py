"""The consumers: handlers fed by the shared loop in :mod:`pigeon.bus.runner`."""
