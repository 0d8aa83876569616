"""Readers and writers: AcqKnowledge files, other real formats, and the Parquet window store."""
