"""Benchmark harness (``make bench`` = ``python -m bench``; ``make bench-ci`` = ``--ci``).

Every benchmark drives a real management node process through the public API and is
reported next to a baseline measured on the same machine in the same run, so the ratios
stay meaningful when the machine changes. See docs/benchmarks.md (written by the harness).
"""
