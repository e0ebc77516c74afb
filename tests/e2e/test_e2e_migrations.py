"""The schema is Alembic's: processes refuse a database that is behind; 'pigeon db' fixes it."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from pigeon.store.migrate import head_revision
from tests.e2e.e2e_processes import STACKS, PigeonCluster


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_an_unmigrated_database_is_refused_until_pigeon_db_upgrade(
    cluster: PigeonCluster,
) -> None:
    """'pigeon api' refuses an empty database in one line; 'db upgrade' then 'db current' fix it."""
    cluster.env["PIGEON_AUTO_MIGRATE"] = "false"
    head = head_revision()

    # Given an empty database, the API refuses to start, saying what to run
    refused = cluster.cli("api", within=60)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("pigeon: error: database "), refused.stderr
    assert "has no Pigeon schema yet" in lines[0]
    assert "pigeon db upgrade" in lines[0]

    # And 'pigeon db current' says it is behind, with exit code 1
    behind = cluster.cli("db", "current")
    assert behind.returncode == 1, behind.stderr
    assert f"revision none (behind; run 'pigeon db upgrade' to reach {head})" in behind.stdout

    # When 'pigeon db upgrade' runs
    upgraded = cluster.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from an empty schema to revision {head}" in upgraded.stdout

    # Then the database is current, a second upgrade has nothing to do
    current = cluster.cli("db", "current")
    assert current.returncode == 0, current.stderr
    assert f"revision {head} (up to date)" in current.stdout
    again = cluster.cli("db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"already at revision {head}" in again.stdout

    # And the API starts on it without --migrate and is ready
    api = cluster.api()
    await cluster.start(api)
    async with httpx.AsyncClient(base_url=cluster.api_url, trust_env=False) as client:
        assert (await client.get("/readyz")).status_code == 200
    assert api.terminate() == 0
    assert "Traceback" not in api.stderr()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", ["sqlite"])
@pytest.mark.parametrize("command", [["run"], ["api", "--migrate"], ["db", "upgrade"]])
def test_a_database_of_a_newer_pigeon_is_refused_in_one_line(
    cluster: PigeonCluster, command: list[str]
) -> None:
    """A revision this Pigeon does not know is never "upgraded": one line, exit 2, nothing
    started (``pigeon run`` migrates in a child process: its error is still that line)."""
    # Given a database a newer Pigeon migrated to a revision this one does not know
    cluster.data_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(cluster.data_dir / "pigeon.db") as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")

    # When the command starts on it
    done = cluster.cli(*command, within=60)

    # Then it refuses in one line naming the revision, and leaves the database as it was
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "is at revision 9999, which this Pigeon does not know" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    with sqlite3.connect(cluster.data_dir / "pigeon.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"alembic_version"}
