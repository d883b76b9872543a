"""``python -m cli``: the ``bitvelocity`` command without its console script."""

from cli.main import main

main()
