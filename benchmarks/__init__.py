"""Benchmarks of pyrovae (run as ``python -m benchmarks.<name>``)."""
