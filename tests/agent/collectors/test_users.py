"""The LocalUsers collector on every fixture distribution."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotsec.agent.collectors.users import USERS_SPEC, UsersCollector
from iotsec.agent.errors import ParseError
from iotsec.agent.hostroot import FakeHostRoot
from iotsec.schema import LocalUsers, LocalUsersEvent, SecurityMessage, encode_message
from tests.msschema import validate_with_microsoft_schema

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
NOW = datetime(2024, 3, 4, tzinfo=UTC)


def users_of(host: FakeHostRoot) -> dict[str, LocalUsers]:
    (event,) = UsersCollector(host).collect(NOW)
    assert isinstance(event, LocalUsersEvent)
    message = SecurityMessage.create([event], agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    validate_with_microsoft_schema(json.loads(encode_message(message)))
    return {row.user_name: row for row in event.payload}


def test_the_spec() -> None:
    assert (USERS_SPEC.name, USERS_SPEC.category, USERS_SPEC.default_priority) == (
        "LocalUsers",
        "Periodic",
        "High",
    )


# distro -> user -> (uid, group names, group ids)
EXPECTED = {
    "debian12": {
        "root": ("0", "root", "0"),
        "pi": (
            "1000",
            "pi;adm;dialout;sudo;audio;video;plugdev;users;gpio",
            "1000;4;20;27;29;44;46;100;997",
        ),
        "sync": ("4", "nogroup", "65534"),
    },
    "ubuntu2204": {
        "deploy": ("1001", "deploy;sudo;docker", "1001;27;998"),
        "toor": ("0", "root", "0"),
    },
    "alpine318": {
        "root": ("0", "root;bin;daemon;sys;adm;disk;wheel;dialout", "0;1;2;3;4;6;10;20"),
        "sensor": ("1000", "sensor;wheel;dialout", "1000;10;20"),
    },
    "rhel9": {"ops": ("1000", "ops;wheel", "1000;10")},
}


@pytest.mark.parametrize("distro", sorted(EXPECTED))
def test_users_and_their_groups(distro: str) -> None:
    users = users_of(FakeHostRoot.from_tree(HOSTS / distro))
    for name, (uid, names, ids) in EXPECTED[distro].items():
        row = users[name]
        assert (row.user_id, row.group_names, row.group_ids) == (uid, names, ids)
    passwd = (HOSTS / distro / "etc/passwd").read_text().splitlines()
    assert len(users) == len(passwd)


def test_a_primary_group_without_a_group_line_is_kept_by_id(tmp_path: Path) -> None:
    host = FakeHostRoot.build(
        tmp_path,
        files={
            "/etc/passwd": "app:x:1500:4242::/srv/app:/bin/sh\n",
            "/etc/group": "docker:x:998:app\n",
        },
    )
    row = users_of(host)["app"]
    assert (row.group_names, row.group_ids) == (";docker", "4242;998")
    assert row.extra_details == {"Shell": "/bin/sh", "Home": "/srv/app"}


def test_a_malformed_passwd_raises_parse_error(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path, files={"/etc/passwd": "root:x:zero:0::/root:/bin/sh\n"})
    with pytest.raises(ParseError, match="uid"):
        UsersCollector(host).collect(NOW)
