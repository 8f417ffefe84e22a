"""
The one exception hierarchy of message-events.

MessageEventsError
├── ConfigError            a setting is missing or invalid (names the key)
├── BrokerError            talking to Kafka failed (carries topic and partition)
│   ├── PublishError       a record was not acknowledged
│   ├── PublishTimeout     acknowledgements did not arrive before a deadline
│   └── TopicError         a topic is missing or differs from its declaration
├── EmbeddedBrokerError    the embedded Tansu broker could not start
└── RestoreError           a partition's dedup state could not be restored

Errors from aiokafka, aiohttp and pydantic are translated where this code
calls them (see ``message_events.kafka.translated``) and chained with
``raise ... from``.
"""

from __future__ import annotations


class MessageEventsError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, **context: object) -> None:
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(message)

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({details})"


class ConfigError(MessageEventsError):
    """A setting is missing or invalid; the message names the key."""


class BrokerError(MessageEventsError):
    """Kafka did not do what was asked."""

    retriable = True


class PublishError(BrokerError):
    """The broker refused or lost a record."""


class PublishTimeout(PublishError):
    """Acknowledgements did not arrive before the deadline."""


class TopicError(BrokerError):
    """A topic is missing, or its partitions differ from its declaration."""

    retriable = False


class EmbeddedBrokerError(MessageEventsError):
    """The embedded Tansu broker could not be started."""


class RestoreError(BrokerError):
    """Dedup state for a partition could not be read back."""
