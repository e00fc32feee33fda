"""``python -m dbroute.cli``: the same as the ``dbroute`` command."""

from dbroute.cli import main

main()
