"""Security and robustness (issue 8): fuzzed parsers and API, tenant isolation, soak."""
