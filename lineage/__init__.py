"""Lineage: the dataset edges the pipeline writes, and OpenLineage run events for its jobs."""
