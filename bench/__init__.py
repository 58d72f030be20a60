"""Benchmarks that compare the app against a baseline measured in the same run (``python -m bench``)."""
