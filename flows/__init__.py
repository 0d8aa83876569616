"""Thin Prefect flows over ecg_pipeline, and the process that serves them."""
