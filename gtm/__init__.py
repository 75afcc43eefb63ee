"""gtm: the shell a user touches (CLI, settings, playbook, runner) and the domain models."""
