"""Model stage: the top-k SAE, its sparse ops, and the seed notebook's port (for the bench)."""
