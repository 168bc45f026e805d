"""The streaming worker, the only wing that imports Faust: the app, the worker's wiring, the `Processor` and its
parts, the web pages, metrics and logs. Imports the broker wing, the loyalty core, settings and schemas."""
