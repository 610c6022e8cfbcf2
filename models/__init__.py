"""The governance domain: constitution, tables, MoU rules, commands. Imports no orchestration."""
