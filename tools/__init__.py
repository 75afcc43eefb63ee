"""Providers and stores: the CRM and channel Protocols, their clients and local twins.

HubSpot, Attio, Dux-Soup, SMTP and Slack clients over one HTTP layer; SQLite twins for the
embedded default; the send outbox and the suppression list. Listed here are the public modules,
imported on demand (a client pulls in its HTTP stack only when used).
"""

__all__ = [
    "alerts",
    "attio",
    "attio_lists",
    "channels",
    "crm",
    "crm_notes",
    "duxsoup",
    "escalations",
    "events",
    "fakes",
    "http",
    "hubspot",
    "hubspot_lists",
    "imap",
    "local_crm",
    "local_outbox",
    "mail_events",
    "outbox",
    "outbox_logic",
    "pg",
    "pg_events",
    "pg_keys",
    "pg_migrate",
    "pg_outbox",
    "pg_suppression",
    "profiles",
    "provider",
    "smtp",
    "sqlite",
    "suppression",
    "unsubscribe",
    "usage",
    "web",
    "web_extract",
    "web_guard",
]
