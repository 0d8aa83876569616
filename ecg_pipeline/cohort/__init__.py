"""Synthetic demo cohort: ECG and respiration for demos and tests, never for accuracy claims."""
