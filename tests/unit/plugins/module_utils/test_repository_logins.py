# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bound logins on a repository host: the key and namespace grammars, the managed block of authorized_keys, and a
run against real files (receiver installed, other keys kept, check mode and links)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.replication import logins as lg
from ansible_collections.gitops.rollback.plugins.module_utils.replication.client import receiver_source
from ansible_collections.gitops.rollback.plugins.modules import repository_logins

KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmgcC63m9gYkFEtj9CqQQ5Sue0j5DnmG6fJBa77+89U root@web1"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMnELNZuS62D4eqt6jA6emLBLVB+xoOA2CuOH5kAagKK root@web2"
KEY3 = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJex9PgPeuyS4AUv31Wp0uqTsjWrSSEO5u3MMXp"
        "fUYvxmjbl6KW4wwnqCEzxYVc8QZLWBz4xH8CZR9VHG2PGYhE= root@web3")
OTHER = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 admin@laptop"  # a line the module does not manage
RECEIVER = "/usr/local/lib/gitops-rollback/receiver.py"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs the receiver owned by root: run the unit tests as root")


def login(namespace: str, key: str) -> lg.Login:
    return lg.parse_login(namespace, key)


def test_a_login_line_forces_the_receiver_with_its_namespace_and_drops_the_comment():
    line = login("web1", KEY1).line(RECEIVER)
    assert line == ('restrict,command="python3 -I -S /usr/local/lib/gitops-rollback/receiver.py --namespace web1" '
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmgcC63m9gYkFEtj9CqQQ5Sue0j5DnmG6fJBa77+89U gitops-rollback:web1")
    assert login("web1", KEY1).fingerprint == "SHA256:GFh0SqVhI15NbsnvlJS/KSxejnZBHvOWpQfeIXZY4f8"  # ssh-keygen -l
    assert login("db-1.example.com", KEY3).key_type == "ecdsa-sha2-nistp256"


@pytest.mark.parametrize("namespace", ["web1\n", "web1\nrestrict", "../web1", "-web1", "web 1", 'web1"', "", None, "a" * 254])
def test_a_namespace_outside_the_grammar_is_refused(namespace):
    with pytest.raises(lg.LoginError, match="not a host namespace"):
        lg.parse_login(namespace, KEY1)


@pytest.mark.parametrize("key", [
    KEY1 + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMnELNZuS62D4eqt6jA6emLBLVB+xoOA2CuOH5kAagKK",  # a second line
    KEY1.replace(" root@web1", "\n"),  # a trailing line break
    'command="/bin/sh" ' + KEY1,  # options in front of the key
    "ssh-dss " + KEY1.split()[1],  # a type not accepted
    "ssh-rsa " + KEY1.split()[1],  # a type its base64 does not hold
    "ssh-ed25519 AAAA!!!!AAAAAAAAAAAAAAAAAAAA",  # not base64
    "ssh-ed25519 " + "A" * 40,  # base64 holding no key
    KEY1 + ' x" y\t',  # a control character in the comment
    "",
    None,
])
def test_a_public_key_that_is_not_one_openssh_key_line_is_refused(key):
    with pytest.raises(lg.LoginError, match="public key for namespace web1"):
        lg.parse_login("web1", key)


def test_one_key_binds_one_namespace_and_logins_are_sorted():
    assert [item.namespace for item in lg.parse_logins([("web2", KEY2), ("web1", KEY1), ("web1", KEY1)])] == ["web1", "web2"]
    with pytest.raises(lg.LoginError, match="given for namespaces web1 and web2"):
        lg.parse_logins([("web1", KEY1), ("web2", KEY1.replace("root@web1", "copied"))])


@pytest.mark.parametrize("path", ["relative/receiver.py", "/opt/my receiver.py", '/opt/r".py', "/opt/../tmp/r.py",
                                  "/opt/./r.py", "/opt/r.py\n", "/"])
def test_a_receiver_path_that_cannot_stand_in_a_forced_command_is_refused(path):
    with pytest.raises(lg.LoginError, match="receiver path"):
        lg.check_receiver_path(path)


def test_the_block_is_added_replaced_in_place_and_removed_and_other_lines_are_kept():
    text = "# my keys\n%s\n\n" % OTHER
    one = lg.render(text, [login("web1", KEY1)], RECEIVER)
    assert one.startswith(text) and one.endswith(lg.END + "\n") and one.count("--namespace") == 1
    moved = one + "ssh-ed25519 AAAAlater admin2\n"
    two = lg.render(moved, lg.parse_logins([("web1", KEY1), ("web2", KEY2)]), RECEIVER)
    assert two.startswith(text + lg.BEGIN + "\n") and two.endswith("\nssh-ed25519 AAAAlater admin2\n")
    assert lg.render(two, lg.parse_logins([("web2", KEY2), ("web1", KEY1)]), RECEIVER) == two
    assert lg.render(two, [], RECEIVER) == text + "ssh-ed25519 AAAAlater admin2\n"
    assert lg.render("", [], RECEIVER) == ""


def test_other_lines_keep_their_bytes_crlf_and_form_feeds_included():
    text = "# my keys\r\n%s\r\nfrom=\"10.0.0.1\"\x0c ssh-ed25519 AAAAx a\x85b\n" % OTHER
    one = lg.render(text, [login("web1", KEY1)], RECEIVER)
    assert one.startswith(text) and one.count("--namespace") == 1
    assert lg.render(one, [], RECEIVER) == text


def test_a_managed_key_in_a_line_outside_the_block_is_refused_unless_commented_out():
    unbound = "%s\n" % KEY1
    with pytest.raises(lg.LoginError, match="line 1 outside the block"):
        lg.render(unbound, [login("web1", KEY1)], RECEIVER)
    assert "--namespace web1" in lg.render("# " + unbound, [login("web1", KEY1)], RECEIVER)


@pytest.mark.parametrize("text", ["%s\n" % lg.BEGIN, "%s\n%s\n" % (lg.END, lg.BEGIN), "%s\n%s\n%s\n%s\n" % ((lg.BEGIN, lg.END) * 2)])
def test_broken_markers_are_refused(text):
    with pytest.raises(lg.LoginError, match="markers"):
        lg.render(text, [], RECEIVER)


# ------------------------------------------------------------------------------ a run against real files
@pytest.fixture
def place(tmp_path):
    """A receiver path and an authorized_keys path below a fresh directory (root's, mode 0755)."""
    tmp_path.chmod(0o755)
    return tmp_path / "lib" / "receiver.py", tmp_path / "home" / ".ssh" / "authorized_keys"


def run(place, logins, check=False):
    receiver, keys = place
    request = lg.Request("root", str(receiver), lg.parse_logins(logins), str(keys))
    return lg.converge(request, receiver_source(), check), request.diffs


def files(place):
    return {str(path): (path.read_bytes(), path.stat().st_mtime_ns, stat.S_IMODE(path.stat().st_mode))
            for path in place if path.exists()}


@needs_root
def test_a_run_installs_the_receiver_and_the_block_then_a_second_run_changes_nothing(place):
    receiver, keys = place
    (keys.parent.parent).mkdir()
    result, _diffs = run(place, [("web1", KEY1), ("web2", KEY2)])
    assert result["changed"] and result["receiver"]["changed"] and result["authorized_keys"]["added"] == ["web1", "web2"]
    assert receiver.read_bytes() == receiver_source()
    assert stat.S_IMODE(receiver.stat().st_mode) == 0o644 and receiver.stat().st_uid == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and stat.S_IMODE(keys.parent.stat().st_mode) == 0o700
    assert keys.read_text().count("restrict,command=") == 2
    before = files(place)
    again, _diffs = run(place, [("web2", KEY2), ("web1", KEY1)])
    assert not again["changed"] and again["authorized_keys"] == {"path": str(keys), "changed": False, "added": [], "removed": []}
    assert files(place) == before


@needs_root
def test_check_mode_reports_the_change_and_its_diff_and_writes_nothing(place):
    receiver, keys = place
    keys.parent.parent.mkdir()
    assert run(place, [("web1", KEY1)], check=True)[0]["changed"]
    assert not receiver.parent.exists() and not keys.parent.exists()  # nothing made, not even the directories
    run(place, [("web1", KEY1)])
    keys.write_text(OTHER + "\n" + keys.read_text())
    receiver.write_bytes(b"# an older receiver\n")
    before = files(place)
    result, diffs = run(place, [("web1", KEY1), ("web3", KEY3)], check=True)
    assert result["changed"] and result["receiver"]["changed"] and result["authorized_keys"]["added"] == ["web3"]
    assert files(place) == before
    block = diffs[1]
    assert "--namespace web3" in block["after"] and "--namespace web3" not in block["before"]
    assert OTHER not in block["before"] + block["after"]  # other keys are not shown
    assert diffs[0]["before"] != diffs[0]["after"]


@needs_root
def test_a_link_in_place_of_the_file_or_its_directory_is_never_written_through(place, tmp_path):
    receiver, keys = place
    keys.parent.parent.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    keys.parent.mkdir()
    os.symlink(target, keys)
    with pytest.raises(lg.LoginError, match="not a regular file"):
        run(place, [("web1", KEY1)])
    os.unlink(keys)
    os.rmdir(keys.parent)
    os.symlink(tmp_path, keys.parent)  # the account replaced its .ssh with a link
    with pytest.raises(UnsafePathError, match="symlink"):
        run(place, [("web1", KEY1)])
    assert target.read_text() == "precious\n" and not (tmp_path / "authorized_keys").exists()
    assert not receiver.exists() or receiver.read_bytes() == receiver_source()


def test_below_the_home_no_link_is_followed_and_only_the_last_directory_is_made(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    deep = str(home / ".ssh" / "keys" / "authorized_keys")
    owner = (os.geteuid(), os.getegid())
    assert lg.open_key_dir(deep, str(home), owner, create=True) is None  # .ssh is missing: not made
    os.symlink(elsewhere, home / ".ssh")  # the account pointed its .ssh elsewhere
    with pytest.raises(UnsafePathError, match="symlink"):
        lg.open_key_dir(deep, str(home), owner, create=True)
    assert not os.listdir(elsewhere)
    os.unlink(home / ".ssh")
    (home / ".ssh").mkdir()
    fd = lg.open_key_dir(deep, str(home), owner, create=True)
    os.close(fd)
    assert stat.S_IMODE((home / ".ssh" / "keys").stat().st_mode) == 0o700


@needs_root
def test_a_receiver_directory_other_users_can_write_is_refused(place):
    receiver, _keys = place
    receiver.parent.mkdir()
    receiver.parent.chmod(0o777)
    with pytest.raises(lg.LoginError, match="writable by every user"):
        run(place, [("web1", KEY1)])
    assert not receiver.exists()


@needs_root
def test_the_module_returns_the_logins_and_a_diff_and_fails_with_the_message(place, capsys):
    receiver, keys = place
    keys.parent.parent.mkdir()
    args = {"user": "root", "receiver": str(receiver), "authorized_keys": str(keys), "_ansible_diff": True,
            "logins": [{"namespace": "web1", "public_key": KEY1}]}
    with patch_module_args(args), pytest.raises(SystemExit):
        repository_logins.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and result["logins"] == [{"namespace": "web1", "key_type": "ssh-ed25519",
                                                       "fingerprint": "SHA256:GFh0SqVhI15NbsnvlJS/KSxejnZBHvOWpQfeIXZY4f8"}]
    assert [entry["after_header"] for entry in result["diff"]] == [str(receiver), str(keys) + " (managed block)"]
    args["logins"] = [{"namespace": "web1\nx", "public_key": KEY1}]
    with patch_module_args(args), pytest.raises(SystemExit):
        repository_logins.main()
    failed = json.loads(capsys.readouterr().out)
    assert failed["failed"] and "is not a host namespace" in failed["msg"]
    assert keys.read_text().count("--namespace web1") == 1
