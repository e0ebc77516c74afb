"""Pure domain model: no I/O, no frameworks."""
