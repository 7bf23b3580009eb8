"""``python -m kaudit.cli``: the `kaudit` command."""

from kaudit.cli.app import main

main()
