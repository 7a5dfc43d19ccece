"""Active-learning campaigns: configuration, seed structures, held-out sets, generation records."""
