"""Ticket events for other services and our own workers: the outbox (written with each state
change), its relay to RabbitMQ, and the consumer framework. A framework: it never imports its
users (``sync_server.chain``); ``sync_server/worker.py`` puts them together."""
