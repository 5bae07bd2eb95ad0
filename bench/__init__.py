"""Benchmarks and the real-data evaluation (not part of the gist package a user imports).

Run the scripts from the repository root (``python bench/reproduce.py``); tests import the
modules as ``bench.benchmark``, ``bench.benchmark_report`` and ``bench.denoise``.
"""
