"""A run's lifecycle: launch, supervision, its directory and records."""
