"""Conditions: parsing, functions, evaluation and the rule state machine."""
