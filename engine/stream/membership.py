"""A worker that crashed is removed from its consumer group by its own restart, not waited for (issue 18, target 4).

A worker killed with kill -9 (or by the OOM killer, or a lost machine) cannot leave its consumer group. The broker
keeps it as a member until its session times out (ESCALERA_SESSION_TIMEOUT_SECONDS): the same worker restarted at
once cannot join before then, since a rebalance waits for every known member, the dead one included. Measured at
1,000,000 customers (bench/restore.py): the restart joined its group after 59.2 s, and was then ready 23 s later.

Kafka's answer is static membership (KIP-345, `group.instance.id`), but Faust's partition assignor did not take
it when tried in issue 18: the restarted worker failed the assertion `metadata.url == str(self._url)` in
`PartitionAssignor.on_assignment` (faust/assignor/partition_assignor.py). So the worker does what a clean stop
would have done, one start late: each time it joins, it records its member id in its data directory (`MEMBER`);
when it starts after a stop that was not clean, it asks the group's coordinator to remove that member (LeaveGroup,
KIP-345's admin `removeMembersFromConsumerGroup`, which also removes a dynamic member by its member id). The group
rebalances at once and the restarted worker joins without waiting for the dead one's session.

Removing a member that is alive would only make it rejoin (its next heartbeat gets UNKNOWN_MEMBER_ID), but it is not
done: a data directory whose RocksDB tables are locked by another process belongs to a running worker, and then
nothing is removed. A member already gone (its session expired, or the stop was clean after all) is answered
UNKNOWN_MEMBER_ID, which is the expected case and said at DEBUG. Any other failure leaves the old wait in place
and says so at INFO: the worker still starts, as before this module.

Tested by tests/integration/test_membership.py (a kill -9 restart joins well within the session timeout).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import orjson

from engine.broker.connection import kafka_python_options
from engine.settings import Settings

log = logging.getLogger("escalera.worker")

MEMBER = "group-member.json"  # in the data directory: the consumer group and member id of this worker's last join


def record_member(data_dir: Path, group: str, member_id: str) -> None:
    """Record the member id this worker joined `group` with (replacing the file at once: a crash leaves the old or
    the new one, and an old one names a member the broker no longer knows, which removal ignores)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = data_dir / f"{MEMBER}.tmp"
    temporary.write_bytes(orjson.dumps({"group": group, "member_id": member_id}))
    os.replace(temporary, data_dir / MEMBER)


def recorded_member(data_dir: Path, group: str) -> str | None:
    """The member id this worker last joined `group` with; None if none is recorded for that group."""
    try:
        found = orjson.loads((data_dir / MEMBER).read_bytes())
        member = found["member_id"] if found["group"] == group else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return member if isinstance(member, str) and member else None


def tables_in_use(tables: Path) -> bool:
    """Whether another process holds a RocksDB table in `tables` open (its LOCK file locked, as RocksDB locks it:
    a POSIX record lock, `fcntl(F_SETLK)`)."""
    if not tables.is_dir():
        return False
    for lock in tables.glob("*/LOCK"):
        try:
            with lock.open("rb+") as handle:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(handle, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        except OSError:
            continue
    return False


def remove_crashed_member(settings: Settings, tables: Path, clean_stop: bool) -> str | None:
    """Before the worker joins: remove the member its last run left in the group, if that run did not stop cleanly.
    Returns the member id removed (None: nothing to remove, or it could not be)."""
    if clean_stop:
        return None
    member = recorded_member(settings.data_dir, settings.app_id)
    if member is None:
        return None
    if tables_in_use(tables):
        log.info("the local tables in %s are open in another process: its group member %s is left alone", tables,
                 member)  # fmt: skip
        return None
    from kafka.admin import KafkaAdminClient, MemberToRemove
    from kafka.errors import KafkaError, UnknownMemberIdError

    try:
        admin = KafkaAdminClient(client_id=f"{settings.app_id}-membership", **kafka_python_options(settings))
        try:
            answers: dict[Any, Any] = admin.remove_group_members(
                settings.app_id, [MemberToRemove(member_id=member, reason="restarted after a crash")]
            )
        finally:
            admin.close()
    except KafkaError as failure:
        log.info("could not remove the member %s this worker left in group %s when it stopped without leaving (%s): "
                 "the group waits ESCALERA_SESSION_TIMEOUT_SECONDS for it", member, settings.app_id,
                 type(failure).__name__)  # fmt: skip
        return None
    error = next(iter(answers.values()), None)
    if error is UnknownMemberIdError:
        log.debug("the member %s of the last run had already left group %s", member, settings.app_id)
        return None
    if error is not None and error.__name__ != "NoError":
        log.info("could not remove the member %s this worker left in group %s (%s): the group waits "
                 "ESCALERA_SESSION_TIMEOUT_SECONDS for it", member, settings.app_id, error.__name__)  # fmt: skip
        return None
    log.info("the last run stopped without leaving group %s: its member %s was removed, so the group does not wait "
             "ESCALERA_SESSION_TIMEOUT_SECONDS for it", settings.app_id, member)  # fmt: skip
    return member
