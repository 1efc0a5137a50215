"""Delivery of notifications: e-mail, Microsoft Teams and signed webhooks, each exactly once."""
