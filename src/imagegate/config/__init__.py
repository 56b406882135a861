"""Configuration: one YAML file plus environment variables for secrets."""
