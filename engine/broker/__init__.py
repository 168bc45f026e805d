"""Kafka as a client: connection options for every client, the pre-flight check, topics, publish, read-back, the
partitioner and the local broker. Imports the loyalty core, settings and schemas; of Faust only `faust.auth`."""
