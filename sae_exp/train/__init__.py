"""Training stage: the trainer, DDP helpers, W&B tracking and quality metrics."""
