"""Search: turn a query into a vector, rank the stored items, shape the hits."""
