"""Selection: which explored structures are worth a label."""
