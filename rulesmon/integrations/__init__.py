"""Hooks that record other frameworks' work in the rulesmon history (celery.py: every Celery
task). Each is imported only by the application that uses it."""
