"""The typed schema, Hydra composition and validation of a run's config."""
