"""Autogenerate the next Alembic migration from the tables: `python .ci/new_migration.py "what"`.

It compares models/tables.py with a database migrated to the newest revision and writes the
difference as a new file under models/migrations/versions/. Read it before committing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from models.db import _alembic_config, make_engine, migrate


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].strip():
        sys.exit('usage: python .ci/new_migration.py "what changed"')
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
        migrate(engine)
        with engine.begin() as connection:
            command.revision(_alembic_config(connection), message=sys.argv[1], autogenerate=True)


if __name__ == "__main__":
    main()
