"""`python -m circuitnn.cli`: the `circuitnn` command."""

from circuitnn.cli import main

main()
