"""Networks (one per file), shared blocks, losses, initialisation and learning-rate schedules."""
