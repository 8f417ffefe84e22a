"""Shared runtime of message-events: settings, errors, Kafka plumbing, the CLI."""
