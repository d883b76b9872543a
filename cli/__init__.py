"""The ``bitvelocity`` command: one module per command group, each thin (parse, call, print).

``cli.main`` holds the root group and registers the others; ``cli.console`` the shared
terminal output and ``cli.errors`` the one place where failures become an ``error:`` line.
"""
