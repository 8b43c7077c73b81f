"""Alembic's entry point for the ledger's revisions: they run on the connection that
carepath.sinks.ledger_migrations.upgrade hands over, in the transaction it holds (the
database lock); no configuration file or URL is read here."""

from alembic import context

from carepath.sinks.ledger_migrations import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
