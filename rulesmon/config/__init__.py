"""The ruleset language: models, YAML loading with positions, interpolation and extends."""
