"""Unit tests for event identity, status ordering and error classes."""

from __future__ import annotations

import json

import pytest

from processors.handlers import (
    DeliveryHandler,
    InboundHandler,
    MmsHandler,
    conversation_id,
)
from processors.state import PartitionState, transition
from schemas.errorcodes import error_category, retry_advice
from schemas.events import CallbackEvent
from schemas.identity import event_identity
from tests.kafka_helpers import fixture_items

NOW = 1_800_000_000


def event_of(fixture: str, index: int = 0) -> CallbackEvent:
    """The ``index``-th item of a fixture, validated."""
    return CallbackEvent.model_validate_json(fixture_items(fixture)[index])


class TestIdentity:
    def test_byte_identical_retries_share_an_identity(self) -> None:
        """The two items of the duplicate fixture are one event."""
        first, second = (
            event_identity(event_of("tricky_duplicate_events.json", i)) for i in (0, 1)
        )

        assert first == second
        assert first.event_id == second.event_id

    def test_group_recipients_are_different_events(self) -> None:
        """Statuses of one outbound group message differ by top-level ``to``."""
        first, second = (
            event_identity(event_of("tricky_outbound_group_status_same_id.json", i))
            for i in (0, 1)
        )

        assert first.message_id == second.message_id
        assert first.event_id != second.event_id

    def test_error_code_is_part_of_identity(self) -> None:
        """The same failure with another code is another event."""
        item = json.loads(fixture_items("message_failed.json")[0])
        other = dict(item, errorCode=4700)

        a = event_identity(CallbackEvent.model_validate(item))
        b = event_identity(CallbackEvent.model_validate(other))

        assert a.event_id != b.event_id

    def test_event_id_is_32_hex_characters(self) -> None:
        """The published event id is the 16-byte digest in hex."""
        identity = event_identity(event_of("message_sent.json"))

        assert len(identity.event_id) == 32
        assert bytes.fromhex(identity.event_id) == identity.digest()


class TestTransition:
    @pytest.mark.parametrize(
        ("current", "new", "expected"),
        [
            (None, "delivered", "advance"),
            ("sending", "delivered", "advance"),
            ("sent", "failed", "advance"),
            ("delivered", "read", "advance"),
            ("queued", "sending", "advance"),
            ("delivered", "sent", "regression"),
            ("sending", "queued", "regression"),
            ("read", "delivered", "regression"),
            ("delivered", "failed", "contradiction"),
            ("failed", "delivered", "contradiction"),
            ("failed", "read", "contradiction"),
            ("delivered", "delivered", "unchanged"),
        ],
    )
    def test_status_never_moves_backwards(
        self, current: str | None, new: str, expected: str
    ) -> None:
        """Ranks only rise, and the first terminal status wins."""
        assert transition(current, new) == expected


class TestErrorClasses:
    @pytest.mark.parametrize(
        ("code", "category", "advice"),
        [
            (4406, "bandwidth-client", "no"),
            (4770, "carrier-client", "no"),
            (4775, "carrier-client", "no"),
            (4785, "carrier-client", "later"),
            (4780, "carrier-client", "later"),
            (5100, "bandwidth-server", "yes"),
            (5106, "bandwidth-server", "once"),
            (5600, "carrier-service", "once"),
            (5650, "carrier-service", "once"),
            (9902, "ambiguous", "no"),
            (9999, "ambiguous", "unknown"),
            (4499, "bandwidth-client", "no"),  # unknown 4xxx: by leading digits
            (5777, "bandwidth-server", "yes"),  # unknown 5xxx
            (5699, "carrier-service", "once"),  # unknown 56xx
            (9100, "ambiguous", "unknown"),
            (123, "unknown", "unknown"),
            (7001, "unknown", "unknown"),
        ],
    )
    def test_codes_are_classified(self, code: int, category: str, advice: str) -> None:
        """Known codes follow the table; unknown ones their leading digits."""
        assert (error_category(code), retry_advice(code)) == (category, advice)


class TestHandlers:
    def test_inbound_copies_of_a_group_share_a_conversation(self) -> None:
        """Each owned copy is its own record with one shared conversation id."""
        handler = InboundHandler()
        state = PartitionState()
        decisions = []
        for i in (0, 1):
            event = event_of("incoming_group_mms_two_owned_recipients.json", i)
            decisions.append(
                handler.handle(event, event_identity(event), state, NOW, None)
            )

        values = [json.loads(d.value or b"") for d in decisions if d is not None]
        assert len(values) == 2
        assert values[0]["conversationId"] == values[1]["conversationId"]
        assert values[0]["owner"] != values[1]["owner"]
        assert values[0]["messageId"] != values[1]["messageId"]

    def test_conversation_id_ignores_order_and_repeats(self) -> None:
        """The participant set, not its order, decides the conversation."""
        assert conversation_id(["+1", "+2", "+3"]) == conversation_id(
            ["+3", "+1", "+2", "+1"]
        )
        assert conversation_id(["+1", "+2"]) != conversation_id(["+1", "+3"])

    def test_received_claiming_out_is_an_anomaly_not_inbound(self) -> None:
        """A message-received with direction out publishes nothing."""
        item = json.loads(fixture_items("incoming_single_sms.json")[0])
        item["message"]["direction"] = "out"
        event = CallbackEvent.model_validate(item)

        decision = InboundHandler().handle(
            event, event_identity(event), PartitionState(), NOW, None
        )

        assert decision is not None
        assert (decision.outcome, decision.anomaly, decision.value) == (
            "anomaly",
            "outbound-as-inbound",
            None,
        )

    def test_status_events_are_not_inbound(self) -> None:
        """The inbound processor does not take delivery receipts."""
        event = event_of("message_delivered_sms.json")

        assert (
            InboundHandler().handle(
                event, event_identity(event), PartitionState(), NOW, None
            )
            is None
        )

    def test_late_sent_after_delivered_publishes_nothing(self) -> None:
        """A regression is refused and counted."""
        state = PartitionState()
        event = event_of("message_sent.json")
        key = f"{event.message.id}/{event.to}"
        state.statuses[key] = ("delivered", NOW + 100)

        decision = DeliveryHandler().handle(
            event, event_identity(event), state, NOW, None
        )

        assert decision is not None
        assert (decision.outcome, decision.value, decision.anomaly) == (
            "regression",
            None,
            "regression-refused",
        )

    def test_expired_status_no_longer_blocks(self) -> None:
        """A status past its window is forgotten, as in the topic."""
        state = PartitionState()
        event = event_of("message_sent.json")
        state.statuses[f"{event.message.id}/{event.to}"] = ("delivered", NOW - 1)

        decision = DeliveryHandler().handle(
            event, event_identity(event), state, NOW, None
        )

        assert decision is not None
        assert decision.outcome == "published"

    def test_failure_carries_its_classification(self) -> None:
        """A failed status names the code, its category and the retry advice."""
        event = event_of("tricky_tollfree_dlr_timeout_9902.json")

        decision = DeliveryHandler().handle(
            event, event_identity(event), PartitionState(), NOW, None
        )

        assert decision is not None
        value = json.loads(decision.value or b"")
        assert value["status"] == "failed"
        assert (value["errorCode"], value["errorCategory"], value["retryAdvice"]) == (
            9902,
            "ambiguous",
            "no",
        )
        assert decision.key == f"{event.message.id}/{event.to}".encode()

    def test_legacy_queued_is_mms_progress(self) -> None:
        """message-queued maps to status queued on the mms processor."""
        event = event_of("message_queued_mms_legacy.json")

        decision = MmsHandler().handle(
            event, event_identity(event), PartitionState(), NOW, None
        )

        assert decision is not None
        assert json.loads(decision.value or b"")["status"] == "queued"


class TestPartitionState:
    def test_purge_drops_only_expired_entries(self) -> None:
        """Entries expire a window after they were written, in memory too."""
        state = PartitionState()
        state.events[b"old"] = NOW - 1
        state.events[b"new"] = NOW + 1
        state.statuses["a/b"] = ("sent", NOW)
        state.statuses["c/d"] = ("sent", NOW + 5)

        dropped = state.purge(NOW)

        assert dropped == 2
        assert set(state.events) == {b"new"}
        assert set(state.statuses) == {"c/d"}
