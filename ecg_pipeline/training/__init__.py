"""Training the DT4ECG models: multi-task loss weighting (GradNorm and baselines)."""
