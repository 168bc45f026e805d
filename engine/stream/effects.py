"""What an outcome leads to on a worker: its state kept for the batch's table write, the partition's counts and due
calendar updated, its decisions (revocations among them) and referral credits and reversals queued for sending (and a
rejection's dead letter)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.broker.partitioner import partition_of
from engine.loyalty import Outcome, ReferralCredited, ReferralReverted
from engine.stream import records
from engine.stream.inputs import LOCAL_CREDITS, Inputs
from engine.stream.metrics import WorkerMetrics
from engine.stream.partitions import OwnedPartition
from engine.stream.ports import Channels, Topic
from engine.stream.referrals import ReferralFrontier
from engine.stream.states import BatchStates
from schemas.construct import flat_json
from schemas.decoder import Rejection
from schemas.events import RejectionSource, outbound_streams


class Effects:
    """Carries out outcomes for the processor, over the parts it shares with it."""

    def __init__(
        self,
        channels: Channels,
        metrics: WorkerMetrics,
        states: BatchStates,
        referrals: ReferralFrontier,
        inputs: Inputs[Any],
        topic_partitions: int,
    ) -> None:
        self.channels, self.metrics, self.states, self.referrals = channels, metrics, states, referrals
        self.inputs, self.topic_partitions = inputs, topic_partitions
        self.partitions: dict[int, OwnedPartition] = {}  # the partitions owned, and what is kept for each
        self.context: dict[int, Any] = {}  # partition -> a record of it, to write that partition's table part
        self.undelivered = False  # decisions or referral credits queued since the producer was last flushed

    @staticmethod
    def send(topic: Topic, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue a record for Faust's producer, which is flushed before offsets are committed (and, for a batch's
        decisions, before its states are written: see `Processor.handle`)."""
        topic.send_soon(key=key, value=value, partition=partition)

    def record(self, record: Any, partition: int, customer_id: str, outcome: Outcome, due: datetime | None) -> None:
        """Keep the outcome's state (written under `record`'s partition) and publish what it decided (`due`: the
        customer's due moment before)."""
        if outcome.duplicate:
            return
        self.metrics.decided(outcome)
        owned = self.partitions.setdefault(partition, OwnedPartition())
        owned.touched.add(customer_id)
        state = outcome.state
        if state is None:
            self.states.erase(customer_id, record)
            self.referrals.erased(customer_id)
            owned.set_spend(customer_id, None)
            owned.place(None, customer_id)
        else:
            self.states.keep(customer_id, state, record)
            owned.place(state, customer_id)
            if state.due is not None and state.due != due:
                owned.calendar.add(state.due, customer_id)
        key = customer_id.encode()
        self.undelivered |= bool(outcome.emitted or outcome.revoked or outcome.referrals or outcome.reversals)
        for decision in outcome.published():  # (a revocation in its place among the decisions, as the replay has it)
            value = flat_json(decision)
            for stream in outbound_streams(decision.type):  # an erasure notice goes to both
                self.send(self.channels.perks if stream == "perks" else self.channels.transitions, key, value)
        for credit in outcome.referrals:
            self.credit(credit)
            self.metrics.referral_credits.inc()
        for reverted in outcome.reversals:
            self.credit(reverted)
            self.metrics.referral_reversals.inc()

    def credit(self, fact: ReferralCredited | ReferralReverted) -> None:
        """Send a referral credit (or its reversal) to the referrer's partition; if this worker owns it, queue it here
        too, at its event time (the copy from Kafka then changes nothing; it is there in case this worker dies)."""
        key = fact.customer_id.encode()
        internal = records.Credit(fact) if isinstance(fact, ReferralCredited) else records.Reverted(fact)
        self.send(self.channels.internal, key, records.encode(internal))
        partition = partition_of(key, self.topic_partitions)
        context = self.context.get(partition)
        if partition in self.partitions and context is not None:
            self.inputs.queue((LOCAL_CREDITS, partition), fact.occurred_at, (context, fact, False))

    def dead_letter(self, rejection: Rejection, message: Any) -> None:
        """A record that is not a valid event: to the dead-letter topic, with its place and the reason."""
        source = RejectionSource(topic=message.topic, partition=message.partition, offset=message.offset)
        letter = rejection.to_event(source, datetime.now(UTC))
        key = None if letter.customer_id is None else letter.customer_id.encode()
        self.send(self.channels.dead_letters, key, letter.model_dump_json().encode())
        self.metrics.rejected(message.topic, rejection.reason)
