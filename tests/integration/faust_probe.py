"""A minimal Faust app for the foundation tests: counts records per key in a table, emits each new count.

Run as `python -m tests.integration.faust_probe worker`;
PROBE_BROKER, PROBE_APP, PROBE_IN and PROBE_OUT name the broker, app id and topics.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ.get("PROBE_APP", "probe"),
    broker=f"kafka://{os.environ.get('PROBE_BROKER', '127.0.0.1:9092')}",
    store="memory://",  # so a restart must restore the table from its changelog topic
    web_enabled=False,
    topic_partitions=2,
    topic_replication_factor=1,
)
source = app.topic(os.environ.get("PROBE_IN", "probe-in"), key_serializer="raw", value_serializer="raw", partitions=2)
counts_out = app.topic(
    os.environ.get("PROBE_OUT", "probe-counts"), key_serializer="raw", value_serializer="json", partitions=2
)
counts = app.Table("counts", default=int, partitions=2)


@app.agent(source, concurrency=1)
async def count(stream: faust.StreamT[bytes]) -> None:
    """Add one to the key's count and publish the new count."""
    async for event in stream.events():
        key = event.key.decode()
        counts[key] += 1
        await counts_out.send(key=event.key, value={"key": key, "count": counts[key]})


if __name__ == "__main__":
    app.main()
