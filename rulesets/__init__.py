"""Builtin rulesets, shipped inside the package so `extends: builtin:NAME` always works."""
