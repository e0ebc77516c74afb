"""A batch item known valid without a model is one the model accepts, read the same way."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pigeon.api.schemas import BatchItem, PlainItem, plain_item

TO = "+14155550123"

#: strings with what the model refuses (NUL, lone surrogates) among ordinary text
_texts = st.one_of(
    st.sampled_from(["sms", "email", TO, "+15005550006", "hello", "", " ", "a\nb"]),
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(["a", "\x00", "\ud800", "\udfff", "é", "😀"]), max_size=4),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(["channel", "to", "body", "from", "metadata", "idempotency_key", "from_"])
_items = st.one_of(
    st.dictionaries(_keys, st.one_of(_texts, _json), max_size=7),
    st.fixed_dictionaries(
        {"channel": st.just("sms"), "to": _texts, "body": _texts},
        optional={"from": st.none() | _texts, "metadata": st.none() | _json},
    ),
    _json,
)


@settings(max_examples=600, deadline=None)
@given(_items)
def test_a_plain_item_is_what_the_model_reads_from_it(raw: Any) -> None:
    """Whenever an item is plain, the model accepts it with the same field values."""
    plain = plain_item(raw)
    if plain is None:
        return
    model = BatchItem.model_validate(raw)
    assert plain == PlainItem(model.to, model.body, model.from_, model.metadata)
    assert model.idempotency_key is None


def test_an_ordinary_item_is_plain() -> None:
    """The usual item (channel, to, body, maybe from and metadata) needs no model."""
    raw = {"channel": "sms", "to": TO, "body": "hi", "from": None, "metadata": {"order": 42}}
    assert plain_item(raw) == PlainItem(TO, "hi", None, {"order": 42})


@pytest.mark.parametrize(
    "raw",
    [
        {"channel": "sms", "to": TO, "body": "hi", "idempotency_key": "k-1"},  # claims a key
        {"channel": "sms", "to": TO, "body": "hi", "extra": 1},
        {"channel": "sms", "to": TO, "body": "hi", "from_": TO},  # the field, not its alias
        {"channel": "fax", "to": TO, "body": "hi"},
        {"channel": "sms", "to": 14155550123, "body": "hi"},
        {"channel": "sms", "to": TO, "body": "a\x00b"},
        {"channel": "sms", "to": TO, "body": "\ud800"},
        {"channel": "sms", "to": TO, "body": "hi", "from": 5},
        {"channel": "sms", "to": TO, "body": "hi", "metadata": {"f": float("nan")}},
        {"channel": "sms", "to": TO, "body": "hi", "metadata": {"big": "x" * 5000}},
        {"channel": "sms", "to": TO, "body": "hi", "metadata": [1]},
        {"to": TO, "body": "hi"},
        ["channel", "sms"],
    ],
)
def test_anything_else_goes_to_the_model(raw: Any) -> None:
    """Keys, types or values the model might refuse are left to it, for its own problem."""
    assert plain_item(raw) is None


def test_what_goes_to_the_model_may_still_be_valid() -> None:
    """An item with a key is not plain, but valid: the model reads it."""
    raw = {"channel": "sms", "to": TO, "body": "hi", "idempotency_key": "k-1"}
    assert plain_item(raw) is None
    assert BatchItem.model_validate(raw).idempotency_key == "k-1"
    with pytest.raises(pydantic.ValidationError):
        BatchItem.model_validate({**raw, "extra": 1})
