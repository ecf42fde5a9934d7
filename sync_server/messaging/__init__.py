"""Ticket events for other services: the outbox (written with each state change) and, later,
its relay to RabbitMQ."""
