"""Stream wiring: the Faust app, topics, the CLI and web views."""
