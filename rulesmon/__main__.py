"""`python -m rulesmon`."""

from rulesmon.cli import main

main()
