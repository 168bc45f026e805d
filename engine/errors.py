"""The one exception root of Escalera, and the errors every module may raise."""


class EscaleraError(Exception):
    """Root of every error Escalera raises on purpose."""


class SettingsError(EscaleraError):
    """An environment variable holds a value Escalera cannot run with."""


class LocalKafkaError(EscaleraError):
    """The local Kafka broker could not be fetched, formatted or started."""


class NotOwnedHere(EscaleraError):
    """A customer query reached a worker that does not own the customer's partition (mid-rebalance)."""
