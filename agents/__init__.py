"""One module per pipeline, each wiring a stream to the pure core in tables/ and to sinks/."""
