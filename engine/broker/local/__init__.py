"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, from jars Maven fetches: for local runs and tests."""

from engine.broker.local.broker import LocalKafka, free_port, running_broker, start_broker

__all__ = ["LocalKafka", "free_port", "running_broker", "start_broker"]
