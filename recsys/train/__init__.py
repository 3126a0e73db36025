"""Training: data preparation for the evaluation protocols, the run orchestration, progress and checkpoints."""
