"""Experiments over the whole system: the algorithm comparison, the end-to-end pipeline, the report."""
