"""``analytics.yaml``'s feed entries, changed one at a time; the API's private-path check."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import yaml

from iotsec.cli import feed_file, intel_api
from iotsec.cli.feed_file import FeedFile
from iotsec.cli.intel_api import private_path
from iotsec.cli.service_client import CliError

HAND_WRITTEN = """\
# my analytics
rules: [extra-rules.yaml, more/rules.yaml]
feeds:
  - {name: one, kind: list-file, path: one.txt}
  - {name: two, kind: stix-file, path: /srv/intel/two.json, refresh: 6h}
outputs:
  syslog: [{host: siem.example, port: 6514, transport: tls, format: cef}]
"""


@pytest.mark.parametrize("module", [feed_file, intel_api])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    target = tmp_path / "analytics.yaml"
    target.write_text(HAND_WRITTEN)
    target.chmod(0o640)
    return target


def test_put_replaces_in_place_and_keeps_the_other_sections(path: Path) -> None:
    feeds = FeedFile(path)
    assert feeds.put({"name": "one", "kind": "list-file", "path": "new.txt"}) is False
    assert feeds.put({"name": "three", "kind": "list-file", "path": "3.txt"}) is True
    document = yaml.safe_load(path.read_text())
    original = yaml.safe_load(HAND_WRITTEN)
    assert [e["name"] for e in document["feeds"]] == ["one", "two", "three"]
    assert document["feeds"][0] == {"name": "one", "kind": "list-file", "path": "new.txt"}
    assert document["feeds"][1] == original["feeds"][1]
    assert (document["rules"], document["outputs"]) == (original["rules"], original["outputs"])
    assert list(document) == ["rules", "feeds", "outputs"]  # the order of the sections too
    assert path.stat().st_mode & 0o777 == 0o640  # the file's mode is kept
    assert [p.name for p in path.parent.iterdir()] == ["analytics.yaml"]  # no temporary left


def test_delete_answers_the_removed_entry(path: Path) -> None:
    feeds = FeedFile(path)
    assert feeds.delete("two") == {
        "name": "two",
        "kind": "stix-file",
        "path": "/srv/intel/two.json",
        "refresh": "6h",
    }
    assert feeds.delete("two") is None
    assert [e["name"] for e in feeds.entries()] == ["one"]


def test_a_hand_made_duplicate_goes_with_the_change(path: Path) -> None:
    path.write_text(HAND_WRITTEN.replace("name: two", "name: one"))
    feeds = FeedFile(path)
    feeds.put({"name": "one", "kind": "list-file", "path": "only.txt"})
    assert feeds.entries() == [{"name": "one", "kind": "list-file", "path": "only.txt"}]


def test_no_file_is_an_empty_one_and_is_created_private(tmp_path: Path) -> None:
    feeds = FeedFile(tmp_path / "analytics.yaml")
    assert feeds.entries() == []
    assert feeds.delete("x") is None
    assert not (tmp_path / "analytics.yaml").exists()
    feeds.put({"name": "x", "kind": "list-file", "path": "x.txt"})
    assert (tmp_path / "analytics.yaml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("feeds: [", "not valid YAML at line 1, column 9: expected the node content"),
        ("feeds: []\nsecret: 's3cret\n", "not valid YAML at line 3"),
        ("- a list\n", "expected a mapping"),
        ("feeds: {name: x}\n", "feeds must be a list"),
    ],
)
def test_a_broken_file_is_refused_and_left_alone(path: Path, text: str, reason: str) -> None:
    path.write_text(text)
    with pytest.raises(CliError, match=reason) as caught:
        FeedFile(path).put({"name": "x", "kind": "list-file", "path": "x.txt"})
    assert "s3cret" not in str(caught.value)
    assert path.read_text() == text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    # A failure the file system will not produce on demand (the test may run as root).
    monkeypatch.setattr(feed_file.os, "replace", full_disk)
    with pytest.raises(CliError, match="cannot write: No space left on device"):
        FeedFile(path).put({"name": "x", "kind": "list-file", "path": "x.txt"})
    assert path.read_text() == HAND_WRITTEN
    assert [p.name for p in path.parent.iterdir()] == ["analytics.yaml"]


def test_a_secret_file_is_private_and_forgotten_only_when_it_is_the_apis(path: Path) -> None:
    feeds = FeedFile(path)
    relative = feeds.write_secret("cti feed/β", "pw")
    secret = path.parent / relative
    assert relative.startswith("intel-secrets/cti_feed_")
    assert secret.read_text() == "pw\n"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.parent.stat().st_mode & 0o777 == 0o700
    hand = path.parent / "hand.pass"
    hand.write_text("mine")
    feeds.forget_secret({"name": "cti feed/β", "password_file": "hand.pass"})
    assert hand.exists()
    feeds.forget_secret({"name": "cti feed/β", "password_file": relative})
    assert not secret.exists()


def test_the_hubs_own_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "tls").mkdir(parents=True)
    elsewhere = tmp_path / "served.key"
    (data / "link.txt").symlink_to(data / "owner.credential")
    private = [
        "owner.credential",
        "console.secret",
        "analytics.yaml",
        "tls/server.key",
        "agent/connection-string",
        "intel-secrets/x.pass",
        "registry.db",
        "log.db-wal",
        "workspace.duckdb",
        "link.txt",  # a link is followed
        ".",
    ]
    for name in private:
        assert private_path(data / name, data), name
    assert private_path(elsewhere, data, also=[elsewhere])
    for name in ("bad-ips.txt", "intel/bundle.json", "intel/db-export.txt"):
        assert not private_path(data / name, data), name
    assert not private_path(tmp_path / "registry.txt", data)
