"""Outbound webhooks: tenant subscriptions, signed deliveries drained by their own loop, SSRF guard."""
