"""Property-based testing settings and input strategies shared by the fuzz suites.

Two Hypothesis profiles:

- ``ci`` (the default): derandomized, so every run tries the same examples
  (a fixed seed per test), few enough that all fuzz suites together take a few
  seconds. Every defect a fuzz run ever found is also pinned as an explicit
  ``@example`` in its test, and explicit examples always run first.
- ``nightly`` (``PIGEON_FUZZ=nightly``): random seeds, ``PIGEON_FUZZ_EXAMPLES``
  examples per test (default 2,000), failures saved in ``tests/fuzz-examples/``
  and replayed first on the next nightly run; pin each one as an ``@example``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

EXAMPLES_DIR = Path(__file__).parent / "fuzz-examples"
_SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
    # the explain phase reruns a failure many times to annotate lines: slow, little use here
    phases=[p for p in Phase if p is not Phase.explain],
)
settings.register_profile(
    "nightly",
    derandomize=False,
    deadline=None,
    max_examples=int(os.environ.get("PIGEON_FUZZ_EXAMPLES", "2000")),
    database=DirectoryBasedExampleDatabase(EXAMPLES_DIR),
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
PROFILE = os.environ.get("PIGEON_FUZZ", "ci")
settings.load_profile(PROFILE)


#: pytest-timeout for one fuzz test: generous in CI, unbounded in practice for the long pass
TIMEOUT = 120 if PROFILE == "ci" else 6 * 3600


def scaled(ci_examples: int) -> settings:
    """Settings of the loaded profile with ``ci_examples`` examples in CI (nightly: its own)."""
    if PROFILE == "ci":
        return settings(max_examples=ci_examples)
    return settings()


#: characters that have broken JSON, databases or form encoding somewhere before
NASTY_CHARS = (
    "\x00",  # PostgreSQL text rejects it
    "\udaa4",  # a lone surrogate: not UTF-8, orjson and urlencode refuse it
    "\ud800",
    "\udfff",
    "\u2028",  # JSON line separator
    "\ufeff",  # byte order mark
    "\x1b",
    "\x7f",
    "é",
    "😀",
    "\n",
    "'",
    '"',
    "\\",
    "%",
    "&",
    "=",
    "+",
    "?",
    "#",
    "/",
)

#: text with any code point, surrogates and NUL included, biased towards the nasty ones
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY_CHARS), st.characters(exclude_categories=())),
    max_size=40,
)

#: numbers JSON can carry but 64-bit integers and finite floats cannot
nasty_numbers = st.one_of(
    st.integers(),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
)

json_leaves = st.one_of(st.none(), st.booleans(), nasty_numbers, nasty_text)

#: any JSON value, the nasty leaves included
json_values: st.SearchStrategy[Any] = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)
    ),
    max_leaves=12,
)


#: JSON text of arrays nested 200 to 5,000 deep (parsers and encoders limit depth)
nested_json = st.integers(min_value=200, max_value=5000).map(lambda n: "[" * n + "]" * n)


def dumps(value: Any) -> bytes:
    """JSON as a lax client sends it: NaN and Infinity allowed, surrogates as escapes."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True).encode()


#: header values an HTTP client can send (no CR, LF or NUL), as bytes
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
).map(lambda text: text.encode("latin-1"))
