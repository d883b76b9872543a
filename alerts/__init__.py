"""Alerts for people and other systems: data-quality ERRORs and dead letters, sent to RabbitMQ."""
