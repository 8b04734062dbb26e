"""``python -m engine.cli``: the ``incident`` command."""

from engine.cli import main

main()
