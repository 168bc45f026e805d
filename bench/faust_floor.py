"""The floor under any Faust worker: a minimal agent doing per record what the raw loop does, through Faust.

Same batches as the Escalera worker (`noack_take`), one table write per record (its changelog), one output
record per record sent straight to the Kafka client, acknowledged after delivery. No decoding beyond JSON,
no rules. bench/stream.py runs it as a subprocess to separate Faust's own cost from Escalera's.

Run by bench/stream.py: python bench/faust_floor.py (configured through ESCALERA_* variables).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from faust.worker import Worker

from engine.settings import load_settings
from engine.stream.app import create_app, use_event_loop


def main() -> None:
    settings = load_settings(dict(os.environ))
    use_event_loop(settings)  # the same loop as the worker's
    topology = create_app(settings)
    app = topology.app
    out = os.environ["FLOOR_OUTPUT_TOPIC"]
    table = topology.customers

    inbound = app.topic(
        *settings.inbound_topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(inbound, concurrency=1, name="floor")
    async def floor(stream: Any) -> None:
        async for events in stream.noack_take(1000, within=0.02):
            sent = []
            for event in events:
                stream._set_current_event(event)
                try:
                    record = orjson.loads(event.value)
                except orjson.JSONDecodeError:
                    record = {}
                key = str(record.get("customer_id") if isinstance(record, dict) else None).encode()
                raw = table.get(key)
                state = {"events": 0} if raw is None else orjson.loads(raw)
                state["events"] += 1
                table[key] = value = orjson.dumps(state)
                sent.append(await app.producer.send(out, event.key, value, None, None, None))
            await asyncio.gather(*sent)
            for event in events:
                await stream.ack(event)

    worker = Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None  # see engine/stream/worker.py
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
