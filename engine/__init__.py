"""Escalera: an event-driven customer-loyalty engine on Apache Kafka."""

__version__ = "0.1.0"
