"""Measuring retrieval quality: precision, recall, AP and nDCG at k over a set of queries,
with bootstrap confidence intervals (``lookalike evaluate retrieval``)."""
