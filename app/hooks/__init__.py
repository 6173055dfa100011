"""Webhooks: config/hooks.yaml (config.py), the Standard Webhooks signature (signing.py) and the
`hotline hooks` commands (commands.py). The outbox's queries are app/records/outbox.py's, the
delivery worker app/net/hooks.py's."""
