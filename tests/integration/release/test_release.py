"""End-to-end: application releases on three real SSH hosts through ansible-playbook."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

from release_helpers import (
    ROOT, SHARED, write_build, by_label, deploy_args, deploy_play, deploy_with_the_module, index, live_version,
    release_dirs, release_module, role_play, set_up_with_the_module, state_of, task_result,
)


def test_deploy_redeploy_plan_refuse_and_roll_back_to_previous_and_to_any_label_on_three_hosts(builds, run_playbook,
                                                                                               clean_fleet):
    """Three releases deployed on three SSH hosts and the playbook runs that follow, each proving its own
    outcome: shared paths are linked into every release, a redeploy changes nothing, check mode says which
    release would become current, an unknown label is refused listing the releases, a rollback goes to the
    previous release and then to any label keeping the bad ones, and a second rollback changes nothing.
    The releases are deployed with the release module on each host, with the arguments the role's deploy passes
    (set-up; the role's deploy from Git with its shared path: the Git-tag test below; from a build directory:
    the molecule scenario)."""
    for host in clean_fleet:
        deploy_with_the_module(host, builds, "v1")
    h1 = clean_fleet["h1"]
    root = h1.local(ROOT)
    (root / "current" / "log" / "app.log").write_text("written by v1\n")
    (root / "shared" / "config" / "app.yml").write_text("edited on the host\n")

    for host in clean_fleet:
        deploy_with_the_module(host, builds, "v2", "v3")

    for host in clean_fleet:
        assert live_version(host) == "v3"
        assert (host.local(ROOT) / "current" / "index.html").read_text() == f"<h1>{host.name} v3</h1>\n"
        assert len(release_dirs(host)) == 3
    # the shared paths: what v1 wrote and the host's own config, not the build's copy
    assert (root / "current" / "log" / "app.log").read_text() == "written by v1\n"
    assert (root / "current" / "config" / "app.yml").read_text() == "edited on the host\n", "not the build's copy"
    assert (root / "current" / "config" / "app.yml").is_symlink()

    # Deploying the current release again changes nothing: decided by the release module, run on each host with
    # the arguments the role's deploy passes (the deploy then the prune at the role's default keep). The role's
    # deploy entry point run again changing nothing: test_deploy_from_git_tags_and_roll_back_by_tag.
    before = {host.name: state_of(host) for host in clean_fleet}
    for host in clean_fleet:
        ok, redeployed = release_module(host, deploy_args(builds, host.name, "v3"))
        assert ok and not redeployed["changed"] and redeployed["release"]["label"] == "v3", redeployed
        ok, pruned = release_module(host, {"state": "pruned", "keep": 5})
        assert ok and not pruned["changed"], pruned
    assert {host.name: state_of(host) for host in clean_fleet} == before

    # Check mode: both plays in one run, the second sees what the first left, which is nothing new.
    plan = new = run_playbook(role_play("main") + deploy_play(builds, "v4"), check=True, diff=True)

    assert plan.ok, plan
    assert {host.name: state_of(host) for host in clean_fleet} == before
    for host in clean_fleet:
        planned = task_result(plan, "Switch current back", host.name)
        assert planned["changed"] and planned["release"]["label"] == "v2" and planned["marked_bad"] == by_label(
            host)["v3"]["id"]
        assert "(v3)" in planned["diff"]["before"] and "(v2)" in planned["diff"]["after"]
        would = task_result(new, "Deploy the release", host.name)
        assert would["changed"] and would["created"] and would["release"] == {
            "id": would["would_create"], "label": "v4", "state": "new"}
    assert "Would switch" in plan.stdout

    # An unknown label: the release module refuses it listing the releases (the role's pre-flight refusing it
    # before any change is the last play of the rollbacks' run below).
    ok, direct = release_module(clean_fleet["h1"], {"state": "rolled_back", "to": "v9"})
    assert not ok and "have: v3 (" in direct["msg"], direct
    assert {host.name: state_of(host) for host in clean_fleet} == before

    # Back to the previous release (the bad one is marked and kept), then to any label, then the listing play
    # reads what the rollbacks left, then the same rollback again changes nothing, then an unknown label fails in
    # the pre-flight listing the releases and changes nothing: one ansible-playbook run.
    listing = [{"hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "List", "gitops.rollback.release_info": {"root": ROOT}}]}]
    second = role_play("main", rollback_release_to="v1")
    second[0]["name"] = "the same rollback again"
    unknown = role_play("main", rollback_release_to="v9")
    unknown[0]["name"] = "an unknown label"
    rolled = run_playbook(role_play("main", rollback_release_reason="health gate failed")
                          + role_play("main", rollback_release_to="v1") + listing + second + unknown)

    preflight = "Pre-flight - find the target release (fails listing the releases when it is unknown)"
    assert not rolled.ok
    assert sorted((e["host"], e["play"], e["task"].split(" : ")[-1]) for e in rolled.events if e["status"] == "failed") \
        == [(host.name, "an unknown label", preflight) for host in clean_fleet], "only the unknown label fails"
    assert not [e for e in rolled.events if e["play"] == "an unknown label" and e["changed"]]
    for host in clean_fleet:
        failed = task_result(rolled, preflight, host.name)
        assert "'v9' is not in /srv/app" in failed["msg"] and "v2 (" in failed["msg"] and "v1 (" in failed["msg"]
        assert failed["labels"] == ["v1", "v2", "v3"]
        # what the listing play read, before the last two plays, is what the host has after them
        now = host.module("gitops.rollback.release_info", {"root": ROOT}).events[-1]["result"]
        assert now["releases"] == rolled.result("List", host.name)["releases"], "the last two plays changed nothing"
    for host in clean_fleet:
        previous = [e for e in rolled.events if e["task"].endswith(" : Switch current back") and e["host"] == host.name]
        assert len(previous) == 3, previous
        to_previous, to_v1, again = (event["result"] for event in previous)
        assert to_previous["changed"] and to_previous["release"]["label"] == "v2", to_previous
        assert to_previous["marked_bad"] == by_label(host)["v3"]["id"]
        releases = by_label(host)
        assert releases["v3"]["marks"] == ["bad"] and releases["v3"]["reason"] == "health gate failed"
        assert (host.local(ROOT) / "releases" / releases["v3"]["id"] / "VERSION").read_text() == "v3\n", "bad kept"

        assert live_version(host) == "v1"
        assert (host.local(ROOT) / "current" / "index.html").read_text() == f"<h1>{host.name} v1</h1>\n"
        assert {label for label, rel in releases.items() if "bad" in rel["marks"]} == {"v2", "v3"}
        assert len(release_dirs(host)) == 3, "bad releases are kept for forensics"
        assert to_v1["changed"] and to_v1["release"]["label"] == "v1"
        assert to_v1["previous_release"]["label"] == "v2" and to_v1["previous_release"]["state"] == "bad"

        assert not again["changed"] and again["release"]["label"] == "v1", again
    listed = rolled.result("List", "h2")
    assert [(r["label"], r["state"], r["current"]) for r in listed["releases"]] == [
        ("v1", "active", True), ("v2", "bad", False), ("v3", "bad", False)]
    assert not [e for e in rolled.events if e["play"] == "the same rollback again" and e["changed"]], \
        "the same rollback again changes nothing"


def test_prune_never_removes_current_last_good_or_kept_bad_releases(builds, clean_fleet):
    # Set-up with the release module on each host, with the arguments the role's entry points pass (deploy,
    # good, main: the tests above run them): v1 good, v2..v5 deployed, two rollbacks mark v5 and v4 bad.
    for host in clean_fleet:
        set_up_with_the_module(host, [deploy_args(builds, host.name, "v1"), {"state": "good", "reason": "health gate passed"},
                                      *(deploy_args(builds, host.name, v) for v in ("v2", "v3", "v4", "v5")),
                                      {"state": "rolled_back", "keep_bad": True}, {"state": "rolled_back", "keep_bad": True}])
        assert live_version(host) == "v3"

    # the module's pruning policy, run on each host as Ansible runs it there
    pruned = {host.name: release_module(host, {"state": "pruned", "keep": 1}) for host in clean_fleet}

    assert all(ok for ok, _result in pruned.values()), pruned
    for host in clean_fleet:
        labels = by_label(host)
        assert set(labels) == {"v1", "v3", "v4", "v5"}, "only v2 may go: v1 good, v3 current, v4/v5 bad"
        assert labels["v1"]["marks"] == ["good"] and index(host)["good"] == labels["v1"]["id"]
        assert release_dirs(host) == {rel["id"] for rel in labels.values()}
        assert live_version(host) == "v3"

    with_bad = {host.name: release_module(host, {"state": "pruned", "keep": 1, "prune_bad": True})
                for host in clean_fleet}

    assert all(ok for ok, _result in with_bad.values()), with_bad
    for host in clean_fleet:
        assert set(by_label(host)) == {"v1", "v3", "v5"}, "v5 is the newest (kept), v1 good, v3 current"


READER = """
import os, sys
path, stop = sys.argv[1], sys.argv[2]
seen, errors = {}, []
while not os.path.exists(stop):
    try:
        with open(path) as fh:
            value = fh.read().strip()
    except OSError as exc:
        errors.append(repr(exc))
        continue
    if not seen:
        print("reading", flush=True)
    seen[value] = seen.get(value, 0) + 1
print(repr((seen, errors[:5], len(errors))), flush=True)
"""


def test_current_switches_atomically_under_a_reader(tmp_path, collections_path):
    """The release engine switching ``current`` 40 times (as state=rolled_back does on a host) while another
    process reads current/VERSION as fast as it can: every read finds a release, never a missing file."""
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.release.operations import ReleaseParams, apply

    root = tmp_path / "app"
    for version in ("v1", "v2"):
        made = apply("present", ReleaseParams(root=str(root), owner="test", src=str(write_build(tmp_path, "h1", version)),
                                              label=version, shared=SHARED))
        assert made["changed"], made
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(root / "current" / "VERSION"), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "reading\n", "the reader started"
        switched = [apply("rolled_back", ReleaseParams(root=str(root), owner="test", to="v1" if item % 2 == 0 else "v2"))
                    for item in range(40)]
    finally:
        stop.touch()
        out = reader.communicate(timeout=60)[0]
    seen, errors, error_count = ast.literal_eval(out)

    assert all(r["changed"] for r in switched), switched
    assert errors == [] and error_count == 0, errors
    assert set(seen) == {"v1", "v2"} and sum(seen.values()) > 1000, seen
    assert (root / "current" / "VERSION").read_text().strip() == "v2"


def test_deploy_from_git_tags_record_a_checkpoint_between_and_roll_back_to_it(clean_fleet, run_playbook, git_repo):
    """The role's deploy from Git tags into an empty root, with its checkpoint entry point recording the current
    release (v1) between the deploys of v1 and of v2 and v3 (one run); then the rollback to the release that
    checkpoint recorded (not the previous one, v2) and the deploy of that tag again, which changes nothing (another
    run). On one host: the role's deploy, checkpoint and rollback have no step shared between hosts (no run_once, no
    delegation); the role's plays over three hosts, each with its own releases: the three-host test above (its check
    mode run plans a deploy on each), and the rollback to a label there."""
    repo = git_repo({"v1": {"VERSION": "v1\n", "app.py": "print(1)\n"},
                     "v2": {"VERSION": "v2\n", "app.py": "print(2)\n", "new.py": ""},
                     "v3": {"VERSION": "v3\n", "app.py": "print(3)\n", "new.py": ""}})

    def deploy_tag(tag: str) -> list[dict]:
        return role_play("deploy", "h1", rollback_release_repo=repo.url, rollback_release_version=tag,
                         rollback_release_shared=["log"])

    result = run_playbook(deploy_tag("v1") + role_play("checkpoint", "h1", rollback_release_checkpoint="pre-v2")
                          + deploy_tag("v2") + deploy_tag("v3"))
    assert result.ok, result

    host = clean_fleet["h1"]
    assert {e["host"] for e in result.events} == {"h1"}, "the plays ran on h1 alone"
    releases = by_label(host)
    assert {label: rel["commit"] for label, rel in releases.items()} == repo.tags
    assert live_version(host) == "v3" and not (host.local(ROOT) / "current" / ".git").exists()
    assert (host.local(ROOT) / "current" / "log").is_symlink(), "the role passes the shared paths"
    component = task_result(result, "Record the current release in the checkpoint", host.name)["component"]
    assert component == {"type": "release", "name": ROOT, "release": releases["v1"]["id"], "label": "v1",
                         "commit": repo.tags["v1"], "blobs": []}
    manifests = list((host.store / "checkpoints").glob("*.json"))
    assert len(manifests) == 1
    assert component in json.loads(manifests[0].read_text())["components"]

    # Back to the checkpoint's release, then the role's deploy of that tag again (a second play of the same run)
    # changes nothing.
    again = deploy_tag("v1")
    again[0]["name"] = "deploy v1 again"
    back = run_playbook(role_play("main", "h1", rollback_release_checkpoint="pre-v2") + again)
    assert back.ok, back
    assert live_version(host) == "v1" and not (host.local(ROOT) / "current" / "new.py").exists()
    switched = task_result(back, "Switch current back", host.name)
    assert switched["changed"] and switched["release"]["label"] == "v1", switched
    redeployed = [e for e in back.events if e["play"] == "deploy v1 again" and e["status"] != "skipped"]
    assert len([e for e in redeployed if e["task"].endswith(" : Deploy the release")]) == 1, redeployed
    assert not [e for e in redeployed if e["changed"]], "deploying the current tag again changes nothing"


def test_current_that_is_not_a_symlink_is_refused_with_advice(builds, clean_fleet):
    """The release module's refusal, with the arguments the role's deploy passes (a module run on the host)."""
    h1 = clean_fleet["h1"]
    (h1.local(ROOT) / "current").mkdir(parents=True)
    (h1.local(ROOT) / "current" / "VERSION").write_text("hand-made\n")

    ok, result = release_module(h1, deploy_args(builds, h1.name, "v1"))

    assert not ok
    msg = result["msg"]
    assert "is a directory, not a symlink" in msg and "Move it into releases/<id>/" in msg
    assert (h1.local(ROOT) / "current" / "VERSION").read_text() == "hand-made\n"


def test_missing_release_directory_is_refused_before_switching(builds, clean_fleet):
    h1 = clean_fleet["h1"]
    deploy_with_the_module(h1, builds, "v1", "v2")
    v1 = by_label(h1)["v1"]["id"]
    os.rename(h1.local(ROOT) / "releases" / v1, h1.local(ROOT) / "v1-moved-away")
    before = state_of(h1)

    ok, result = release_module(h1, {"state": "rolled_back"})

    assert not ok, result
    msg = result["msg"]
    assert f"Release {v1} (v1) is listed" in msg and "is missing" in msg
    assert state_of(h1) == before and live_version(h1) == "v2"
