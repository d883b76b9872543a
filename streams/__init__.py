"""The stream runtime: the consumer runtime, the Faust app, the worker and its web views."""
