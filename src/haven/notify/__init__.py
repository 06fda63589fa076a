"""Outgoing events for custom recovery: webhooks and OpenStack-style notifications on RabbitMQ."""
