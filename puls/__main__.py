"""`python -m puls` = the `puls` command."""

from puls.cli import app

app()
