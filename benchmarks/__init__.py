"""Benchmarks and load checks, run as files (``python benchmarks/bench.py``, ``load_web.py``,
``bench_pipeline.py``); not part of the installed package.

A package so that the scripts' parts import each other as ``benchmarks.<module>`` and the
tests can use the web load helpers (:mod:`benchmarks.loopback`, :mod:`benchmarks.loadcheck`).
"""
