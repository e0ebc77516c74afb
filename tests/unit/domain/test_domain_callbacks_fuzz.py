"""Any status-callback form maps to no event or to one that survives the event envelope."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzzing import scaled

from pigeon.domain.callbacks import event_from_twilio_status
from pigeon.domain.events import decode, encode

FIELDS = ("MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ErrorCode", "ErrorMessage")
STATUSES = ("queued", "sent", "delivered", "undelivered", "failed")
# what a form decoded with errors="replace" can hold: any code point but surrogates
form_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
form_values = st.one_of(
    st.sampled_from(STATUSES), st.from_regex(r"\A[0-9]{1,40}\Z"), st.just("²"), form_text
)


@scaled(150)
@given(params=st.dictionaries(st.one_of(st.sampled_from(FIELDS), form_text), form_values))
@example(params={"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "²"})
@example(params={"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "9" * 40})
def test_any_callback_form_maps_to_no_event_or_one_that_round_trips(
    params: dict[str, str],
) -> None:
    """The callback parser never raises, and its event encodes and decodes to itself."""
    event = event_from_twilio_status("acc_1", "ntf_1", params)

    if event is not None:
        assert decode(encode(event)) == event
