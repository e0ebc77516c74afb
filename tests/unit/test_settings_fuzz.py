"""Any value of any PIGEON_* setting is accepted and usable, or refused in one line naming it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzzing import json_values, scaled

from pigeon.bootstrap import build
from pigeon.config import Settings, load_settings
from pigeon.errors import PigeonError

NAMES = sorted(Settings.model_fields)
#: what an environment variable can hold (no NUL; surrogates only via surrogateescape)
env_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40
)
tricky = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "0",
        "1e999",
        "nan",
        "inf",
        "-inf",
        "99999999999999999999999",
        "true",
        "yes",
        "LOUD",
        "debug",
        "sqlite://",
        "sqlite:///",
        "postgresql://",
        "postgresql://u@h:99999/db",
        "kafka://",
        "kafka://host",
        "kafka://:0",
        "http://",
        "ftp://x",
        "[]",
        "[1]",
        "{}",
        '[{"name": "a"}]',
    ]
)
values = st.one_of(tricky, env_text, json_values.map(json.dumps))


@contextmanager
def _environment(name: str, value: str, data_dir: str) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("PIGEON_")}
    for key in saved:
        del os.environ[key]
    os.environ["PIGEON_DATA_DIR"] = data_dir
    os.environ[f"PIGEON_{name.upper()}"] = value
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("PIGEON_")]:
            del os.environ[key]
        os.environ.update(saved)


@scaled(200)
@given(name=st.sampled_from(NAMES), value=values)
@example(name="log_level", value="LOUD")
@example(name="data_dir", value="1" * 300)  # found: File name too long (OSError)
@example(name="idempotency_ttl_hours", value="1e999")  # found: OverflowError in timedelta
@example(name="log_level", value="warning")
@example(name="sms_providers", value='[{"name": "a", "url": "http://h:99999"}]')
def test_any_setting_value_is_usable_or_one_line_naming_the_setting(name: str, value: str) -> None:
    """load_settings() and build() take the value, or raise one line that names a setting."""
    data_dir = "fuzz-data-never-created"
    with _environment(name, value, data_dir):
        try:
            settings = load_settings()
            assert isinstance(logging.getLevelName(settings.log_level), int)
            build(settings)
        except PigeonError as exc:
            text = str(exc)
            assert "\n" not in text, text
            assert text.startswith("PIGEON_"), text
    assert not os.path.exists(data_dir)  # building creates nothing
