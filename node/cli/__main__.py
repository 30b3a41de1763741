"""`python -m node.cli` runs the `datanet` command."""

from node.cli import main

main()
