"""Offline: file in, files out — the replay and its outputs, the summary, the funnel picture, the simulation, the line
reader. Imports the loyalty core, settings and schemas; never Kafka, Faust or the stream wing."""
