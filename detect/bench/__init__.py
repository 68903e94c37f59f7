"""Benchmarks that compare recipes or frameworks (the tools in ``tools/`` are their front ends)."""
