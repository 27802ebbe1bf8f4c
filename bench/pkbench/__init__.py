"""passkeyd benchmark: load generator, systems under test, report (see bench/README.md)."""
