"""``python -m pigeon``: the same command line as ``pigeon``."""

from pigeon.cli import main

main()
