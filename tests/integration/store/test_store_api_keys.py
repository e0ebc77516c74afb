"""API keys listed, revoked and rotated (both dialects); a revocation reaches every process."""

from __future__ import annotations

import pytest
from tests.support import eventually

from pigeon.errors import ConflictError, NotFoundError
from pigeon.store.engine import DatabaseUrl
from pigeon.store.key_cache import KEY_CACHE_SECONDS
from pigeon.store.sql_store import SqlStore


async def test_keys_are_listed_without_the_key_oldest_first_and_by_account(
    store: SqlStore,
) -> None:
    _, first = await store.create_api_key("acme")
    await store.create_api_key("acme", admin=True)
    await store.create_api_key("other")
    keys = await store.api_keys()
    assert [(k.account_name, k.is_admin, k.active) for k in keys] == [
        ("acme", False, True),
        ("acme", True, True),
        ("other", False, True),
    ]
    assert keys[0].prefix == first[:8] and first not in repr(keys)
    assert [k.account_name for k in await store.api_keys("acme")] == ["acme", "acme"]
    assert await store.api_keys("nobody") == []


async def test_a_revoked_key_is_refused_at_once_and_cannot_be_revoked_twice(
    store: SqlStore,
) -> None:
    _, key = await store.create_api_key("acme")
    assert await store.authenticate(key) is not None  # now in this process's cache
    (listed,) = await store.api_keys("acme")
    revoked = await store.revoke_api_key(listed.id)
    assert not revoked.active and revoked.revoked_at is not None
    assert await store.authenticate(key) is None
    with pytest.raises(ConflictError, match="already revoked"):
        await store.revoke_api_key(listed.id)
    with pytest.raises(NotFoundError, match="no API key"):
        await store.revoke_api_key("key_nope")
    (after,) = await store.api_keys("acme")
    assert after.revoked_at == revoked.revoked_at


async def test_a_rotated_key_is_replaced_by_one_of_the_same_account_and_kind(
    store: SqlStore,
) -> None:
    account, old_key = await store.create_api_key("ops", admin=True)
    (old,) = await store.api_keys("ops")
    revoked, new_key = await store.rotate_api_key(old.id)
    assert revoked.id == old.id and not revoked.active
    assert await store.authenticate(old_key) is None
    now = await store.authenticate(new_key)
    assert now is not None and (now.id, now.is_admin) == (account.id, True)
    with pytest.raises(ConflictError):
        await store.rotate_api_key(old.id)  # a revoked key is not rotated again
    assert [k.active for k in await store.api_keys("ops")] == [False, True]


async def test_another_process_refuses_a_revoked_key_within_a_second(
    store: SqlStore, database: DatabaseUrl
) -> None:
    """A second store on the same database stands for another API process: it had the
    key in its cache, and stops accepting it within KEY_CACHE_SECONDS."""
    other = SqlStore(database, outbox=True)
    await other.start()
    try:
        _, key = await store.create_api_key("acme")
        assert await other.authenticate(key) is not None
        (listed,) = await store.api_keys("acme")
        await store.revoke_api_key(listed.id)

        async def refused() -> bool:
            return await other.authenticate(key) is None

        await eventually(refused, within=KEY_CACHE_SECONDS + 2)
    finally:
        await other.stop()


async def test_warming_up_writes_nothing_and_keys_still_work(store: SqlStore) -> None:
    """An API process warms its store up before it listens: connections opened, the key
    lookup compiled, nothing written, and a key made before or after still answers."""
    _, before = await store.create_api_key("acme")
    await store.warm_up()
    await store.warm_up()  # twice: harmless
    _, after = await store.create_api_key("acme")
    assert [k.account_name for k in await store.api_keys()] == ["acme", "acme"]
    assert await store.authenticate("pgn_unknown") is None
    for key in (before, after):
        account = await store.authenticate(key)
        assert account is not None and account.name == "acme"
