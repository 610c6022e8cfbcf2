"""Before the first release only: rewrite migration 0001 from the current tables.

After wct has landed on a user's machine, schema changes are new migrations, never this.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from models.db import MIGRATIONS, _alembic_config, make_engine


def main() -> None:
    target = MIGRATIONS / "versions" / "0001_initial_schema.py"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'gen.db'}")
        with engine.begin() as connection:
            command.revision(
                _alembic_config(connection),
                message="initial schema",
                autogenerate=True,
                rev_id="0001",
            )
    text = target.read_text()
    marker = "    # ### end Alembic commands ###\n"
    seed = (
        "    op.execute(\n"
        '        "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, \'"\n'
        "        + models.tables.GENESIS\n"
        '        + "\')"\n'
        "    )\n"
    )
    text = text.replace(marker, marker + seed, 1)
    text = (
        "\n".join(line for line in text.splitlines() if not line.startswith("Create Date:")) + "\n"
    )
    target.write_text(text)
    print(f"rewrote {target}")  # noqa: T201


if __name__ == "__main__":
    main()
