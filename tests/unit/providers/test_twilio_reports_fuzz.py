"""Any status-callback form maps to no event or to one that survives the event envelope."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzzing import scaled

from pigeon.domain.delivery import DeliveryReport
from pigeon.domain.events import decode, encode
from pigeon.providers.twilio_reports import report_from_callback

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
    """The callback parser never raises, its report survives being kept, and its event
    encodes and decodes to itself."""
    report = report_from_callback(params)
    assert DeliveryReport.from_json(report.to_json()) == report
    event = report.event("acc_1", "ntf_1", provider="twilio", attempt=0)

    if event is not None:
        assert decode(encode(event)) == event
