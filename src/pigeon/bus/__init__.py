"""The event bus port, its backends, and the shared consumer loop."""
