"""Alembic's environment for the prediction store (:mod:`regimelab.store`).

Run by :mod:`regimelab.store` on a connection it opened (``config.attributes
["connection"]``), never from an ``alembic.ini``: ``regimelab store upgrade``
is the command line. The revision is kept in ``regimelab_store_version``, not
Alembic's default table, which Optuna uses when a study shares the database.

A new revision (after a change to :data:`regimelab.store.PREDICTIONS`), written
to ``versions/r0003_<slug>.py`` from ``script.py.mako``::

    python -c "from alembic import command; from regimelab.store import _config;
    command.revision(_config(), 'what changed', rev_id='0003')"
"""

from __future__ import annotations

from alembic import context

from regimelab.store import _META, VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=_META, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
