"""gtm: the domain (`gtm.domain`), the application (`gtm.app`) and the interfaces a user touches
(`gtm.cli`, `gtm.web`). See the README's "Layout" for who may import whom."""

__all__ = ["app", "cli", "domain", "web"]
