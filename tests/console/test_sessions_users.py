"""Session cookies, password hashes and the user store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from iotsec.console import SqliteUserStore, UnknownUser, UserExists, UserInvalid
from iotsec.console.passwords import hash_password, verify_password
from iotsec.console.sessions import SessionCodec, load_or_create_secret


def test_a_session_round_trips_and_forgeries_fail() -> None:
    codec = SessionCodec(b"k" * 32, ttl=60, clock=lambda: 1000.0)
    session = codec.new("alice", stamp="7")
    value = codec.encode(session)
    assert codec.decode(value) == session
    other = SessionCodec(b"j" * 32, ttl=60, clock=lambda: 1000.0)
    assert other.decode(value) is None
    payload, signature = value.split(".")
    for forged in (
        f"{payload}x.{signature}",
        f"{payload}.{signature[:-1]}",
        payload,
        "",
        "a.b.c",
        "é.é",
        None,
    ):
        assert codec.decode(forged) is None, forged


def test_a_session_expires() -> None:
    now = [1000.0]
    codec = SessionCodec(b"k" * 32, ttl=60, clock=lambda: now[0])
    value = codec.encode(codec.new("alice"))
    now[0] = 1059.0
    assert codec.decode(value) is not None
    now[0] = 1060.0
    assert codec.decode(value) is None


def test_each_new_session_has_its_own_csrf_token() -> None:
    codec = SessionCodec(b"k" * 32, ttl=60)
    assert codec.new().csrf != codec.new().csrf


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SessionCodec(b"short", ttl=60)


def test_the_secret_file_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "console.secret"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_password_hashes_are_salted_scrypt() -> None:
    one, two = hash_password("same password", n=2**10), hash_password("same password", n=2**10)
    assert one.startswith("scrypt$1024$8$1$")
    assert one != two
    assert verify_password("same password", one)
    assert verify_password("same password", two)
    assert not verify_password("same passwore", one)
    for broken in ("", "md5$x", "scrypt$1$2$3$%%$%%", one.replace("scrypt", "bcrypt")):
        assert not verify_password("same password", broken)


@pytest.fixture
def store(tmp_path: Path) -> SqliteUserStore:
    return SqliteUserStore(tmp_path / "users.db", cost=2**10)


def test_the_store_file_is_private(store: SqliteUserStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_users_are_added_listed_and_authenticated(store: SqliteUserStore) -> None:
    store.add("zoe", "viewer", "zoe-long-password")
    store.add("adam", "admin", "adam-long-password")
    assert [(u.username, u.role) for u in store.list()] == [("adam", "admin"), ("zoe", "viewer")]
    user = store.authenticate("ZOE", "zoe-long-password")
    assert user is not None
    assert user.username == "zoe"
    assert store.authenticate("zoe", "adam-long-password") is None
    assert store.authenticate("nobody", "zoe-long-password") is None
    with pytest.raises(UserExists):
        store.add("Zoe", "admin", "another-long-password")


def test_the_store_keeps_no_plain_password(store: SqliteUserStore) -> None:
    store.add("zoe", "viewer", "zoe-long-password")
    assert b"zoe-long-password" not in store.path.read_bytes()


@pytest.mark.parametrize(
    ("name", "role", "password", "field"),
    [
        ("", "viewer", "long-enough-pw", "username"),
        ("a b", "viewer", "long-enough-pw", "username"),
        ("-dash", "viewer", "long-enough-pw", "username"),
        ("x" * 65, "viewer", "long-enough-pw", "username"),
        ("Owner", "viewer", "long-enough-pw", "username"),
        ("ok", "superuser", "long-enough-pw", "role"),
        ("ok", "viewer", "short", "password"),
    ],
)
def test_bad_users_are_refused_naming_the_field(
    store: SqliteUserStore, name: str, role: str, password: str, field: str
) -> None:
    with pytest.raises(UserInvalid) as caught:
        store.add(name, role, password)
    assert caught.value.field == field


def test_every_change_bumps_the_generation(store: SqliteUserStore) -> None:
    first = store.add("zoe", "viewer", "zoe-long-password")
    assert first.generation == 1
    assert store.set_role("zoe", "analyst").generation == 2
    assert store.set_password("zoe", "zoe-new-password").generation == 3
    disabled = store.set_disabled("zoe", True)
    assert (disabled.generation, disabled.disabled) == (4, True)
    assert store.authenticate("zoe", "zoe-new-password") is None  # disabled
    store.set_disabled("zoe", False)
    assert store.authenticate("zoe", "zoe-new-password") is not None
    store.delete("zoe")
    assert store.get("zoe") is None


@pytest.mark.parametrize("change", ["role", "password", "disable", "delete"])
def test_changing_an_unknown_user_says_so(store: SqliteUserStore, change: str) -> None:
    with pytest.raises(UnknownUser):
        if change == "role":
            store.set_role("ghost", "viewer")
        elif change == "password":
            store.set_password("ghost", "ghost-long-password")
        elif change == "disable":
            store.set_disabled("ghost", True)
        else:
            store.delete("ghost")
