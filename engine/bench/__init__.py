"""Benchmarks behind `vsdream bench …`: they print figures, they are not tests."""
