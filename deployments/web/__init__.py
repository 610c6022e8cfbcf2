"""The members' pages: an ASGI app (Starlette) served by `wct up` beside the Prefect UI, or alone
by `wct web`. Members follow a signed link from a message to a one-page form for one action; the
form calls the same `models.service.execute` as the CLI."""
