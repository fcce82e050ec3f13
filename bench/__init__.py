"""Benchmarks for qwc-service, each measured against a floor that strips the framework away.

Run ``python -m bench`` (or ``python bench/run.py``); ``--quick`` for a short run.
See docs/performance.md for the cases, the latest figures and how to read them.
"""
