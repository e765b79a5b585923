# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention policies, checked against restic's documented ``forget`` behaviour."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams, prune_checkpoints
from ansible_collections.gitops.rollback.plugins.module_utils.store.retention import (
    Policy, RetentionError, Snapshot, forgotten, plan,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc).timestamp()


def _snap(created: str, label=None, kind="checkpoint", cid=None) -> Snapshot:
    moment = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return Snapshot(cid or moment.strftime("%Y%m%dT%H%M%S.000Z-000000"), moment.timestamp(), label, kind)


def _kept(decisions) -> dict:
    return {dec.snapshot.id[:15]: dec.reasons for dec in decisions if dec.kept}


def _kept_ids(snaps, **policy) -> list:
    return [dec.snapshot.id[:15] for dec in plan(snaps, Policy(**policy), NOW) if dec.kept]


# One snapshot every 6 hours from 2026-11-20 00:00 to 2026-12-02 18:00 (UTC), unlabelled.
SERIES = [_snap("2026-11-%02dT%02d:00:00Z" % (day, hour)) for day in range(20, 31) for hour in (0, 6, 12, 18)]
SERIES += [_snap("2026-12-%02dT%02d:00:00Z" % (day, hour)) for day in (1, 2) for hour in (0, 6, 12, 18)]


def test_keep_last_keeps_the_newest_n():
    assert _kept_ids(SERIES, keep_last=3) == ["20261202T060000", "20261202T120000", "20261202T180000"]


def test_keep_daily_keeps_the_newest_of_each_of_the_last_n_days():
    assert _kept_ids(SERIES, keep_daily=3) == ["20261130T180000", "20261201T180000", "20261202T180000"]


def test_keep_hourly_counts_hours_that_hold_a_checkpoint_not_clock_hours():
    # restic: "for the last n hours in which a snapshot was made" - the 6-hour gaps do not use up the count.
    assert _kept_ids(SERIES, keep_hourly=3) == ["20261202T060000", "20261202T120000", "20261202T180000"]


def test_keep_weekly_uses_iso_weeks():
    # 2026-11-29 is a Sunday (ISO week 48 ends), 2026-11-22 too (week 47 ends).
    decisions = plan(SERIES, Policy(keep_weekly=3), NOW)
    assert _kept(decisions) == {
        "20261122T180000": ["weekly 2026-W47"],
        "20261129T180000": ["weekly 2026-W48"],
        "20261202T180000": ["newest", "weekly 2026-W49"],
    }


def test_keep_monthly_and_yearly():
    snaps = [_snap("2024-06-01T00:00:00Z"), _snap("2025-01-15T00:00:00Z"), _snap("2025-12-31T23:59:59Z"),
             _snap("2026-01-01T00:00:00Z"), _snap("2026-01-20T00:00:00Z")]
    assert _kept_ids(snaps, keep_monthly=2) == ["20251231T235959", "20260120T000000"]
    assert _kept_ids(snaps, keep_yearly=5) == ["20240601T000000", "20251231T235959", "20260120T000000"]


def test_rules_add_up_and_each_kept_checkpoint_says_why():
    decisions = plan(SERIES, Policy(keep_last=2, keep_daily=2, keep_monthly=2), NOW)
    assert _kept(decisions) == {
        "20261130T180000": ["monthly 2026-11"],
        "20261201T180000": ["daily 2026-12-01"],
        "20261202T120000": ["last"],
        "20261202T180000": ["newest", "last", "daily 2026-12-02", "monthly 2026-12"],
    }
    assert len(forgotten(decisions)) == len(SERIES) - 4


def test_unlimited_count_keeps_one_per_period_for_every_period():
    assert len(_kept_ids(SERIES, keep_daily=-1)) == 13


def test_keep_within_days_is_measured_from_the_newest_checkpoint_not_now():
    # restic's --keep-within: relative to the latest snapshot, so a store nobody wrote to for weeks keeps it.
    kept = _kept_ids(SERIES, keep_within_days=0.5)
    assert kept == ["20261202T060000", "20261202T120000", "20261202T180000"]
    later = plan(SERIES, Policy(keep_within_days=0.5), NOW + 365 * 86400.0)
    assert [dec.snapshot.id[:15] for dec in later if dec.kept] == kept


def test_the_newest_checkpoint_is_always_kept():
    assert _kept_ids(SERIES, keep_last=0) == ["20261202T180000"]
    assert _kept_ids(SERIES, keep_labels=[]) == ["20261202T180000"]


def test_the_newest_safety_checkpoint_is_always_kept():
    snaps = [_snap("2026-11-01T00:00:00Z", "safety/v1.0.0", "safety"),
             _snap("2026-11-02T00:00:00Z", "safety/v1.1.0", "safety"),
             _snap("2026-11-03T00:00:00Z")]
    decisions = plan(snaps, Policy(keep_last=1), NOW)
    assert _kept(decisions) == {"20261102T000000": ["newest safety checkpoint"],
                                "20261103T000000": ["newest", "last"]}


def test_a_rollback_runs_safety_label_marks_a_safety_checkpoint_too():
    snaps = [_snap("2026-11-01T00:00:00Z", "safety/v1.0.0", "safety"),
             _snap("2026-11-02T00:00:00Z", "safety/rollback-20261102T000000Z-7"),
             _snap("2026-11-03T00:00:00Z", "scheduled/2026-11-03")]
    assert _kept_ids(snaps, keep_last=1) == ["20261102T000000", "20261103T000000"]


def test_release_tags_are_always_kept_and_keep_labels_adds_patterns():
    snaps = [_snap("2026-10-01T00:00:00Z", "v1.2.3"), _snap("2026-10-02T00:00:00Z", "scheduled/2026-10-02"),
             _snap("2026-10-03T00:00:00Z", "very-old"), _snap("2026-10-04T00:00:00Z", "v2.0.0-rc1"),
             _snap("2026-10-05T00:00:00Z")]
    assert _kept(plan(snaps, Policy(keep_last=1), NOW)) == {
        "20261001T000000": ["label matches v[0-9]*"],
        "20261004T000000": ["label matches v[0-9]*"],
        "20261005T000000": ["newest", "last"],
    }
    assert _kept_ids(snaps, keep_last=1, keep_labels=["scheduled/*"]) == [
        "20261001T000000", "20261002T000000", "20261004T000000", "20261005T000000"]
    assert _kept_ids(snaps, keep_last=1, keep_labels=[]) == ["20261001T000000", "20261004T000000", "20261005T000000"]


def test_no_policy_forgets_a_release_tags_checkpoint_nor_the_newest_safety_checkpoint():
    snaps = [_snap("2026-11-01T00:00:00Z", "v1.0.0"), _snap("2026-11-02T00:00:00Z", "safety/rollback-1"),
             _snap("2026-11-03T00:00:00Z", "safety/rollback-2"), _snap("2026-11-04T00:00:00Z", "build-7"),
             _snap("2026-11-05T00:00:00Z", "build-8")]
    for policy in (Policy(keep=1), Policy(older_than_days=1), Policy(keep_last=1, keep_labels=[]), Policy(keep_daily=1)):
        assert forgotten(plan(snaps, policy, NOW)) == [snaps[1].id, snaps[3].id], policy
    reasons = _kept(plan(snaps, Policy(keep=1), NOW))
    assert reasons == {"20261101T000000": ["label matches v[0-9]*"],
                       "20261103T000000": ["newest safety checkpoint"], "20261105T000000": ["newest"]}


def test_label_patterns_are_case_sensitive_globs():
    snaps = [_snap("2026-10-01T00:00:00Z", "V1.0.0"), _snap("2026-10-02T00:00:00Z", "release/v1"),
             _snap("2026-10-03T00:00:00Z")]
    assert _kept_ids(snaps, keep_labels=["v*"]) == ["20261003T000000"]
    assert _kept_ids(snaps, keep_labels=["*/v?"]) == ["20261002T000000", "20261003T000000"]


def test_ties_in_one_second_are_ordered_by_id_and_the_later_id_wins_its_period():
    first = _snap("2026-11-01T10:00:00Z", cid="20261101T100000.100Z-aaaaaa")
    second = _snap("2026-11-01T10:00:00Z", cid="20261101T100000.900Z-000000")
    for order in ([first, second], [second, first]):
        decisions = plan(order, Policy(keep_daily=1), NOW)
        assert [dec.snapshot.id for dec in decisions] == [first.id, second.id]
        assert forgotten(decisions) == [first.id]


def test_periods_are_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: local dates differ from UTC dates
    snaps = [_snap("2026-11-01T09:00:00Z"), _snap("2026-11-01T11:00:00Z"), _snap("2026-11-02T01:00:00Z")]
    assert _kept_ids(snaps, keep_daily=5) == ["20261101T110000", "20261102T010000"]


def test_count_age_policy_is_unchanged():
    snaps = [_snap("2026-11-0%dT00:00:00Z" % day, "build-1.%d.0" % day) for day in range(1, 6)]
    assert forgotten(plan(snaps, Policy(keep=2), NOW)) == [s.id for s in snaps[:3]]
    assert forgotten(plan(snaps, Policy(keep=0), NOW)) == [s.id for s in snaps[:4]]
    # NOW is 2026-12-03 12:00: 2026-11-03 is 30.5 days old, and exactly that age is not older.
    assert forgotten(plan(snaps, Policy(older_than_days=30.5), NOW)) == [s.id for s in snaps[:2]]
    assert forgotten(plan(snaps, Policy(older_than_days=32), NOW)) == [snaps[0].id]
    assert forgotten(plan(snaps, Policy(older_than_days=1), NOW)) == [s.id for s in snaps[:4]]
    assert forgotten(plan(snaps, Policy(keep=4, older_than_days=32), NOW)) == [snaps[0].id]
    reasons = _kept(plan(snaps, Policy(keep=2, older_than_days=100), NOW))
    assert reasons == {"20261104T000000": ["among the newest 2", "not older than 100 days"],
                       "20261105T000000": ["newest"]}


def test_an_empty_store_forgets_nothing():
    assert plan([], Policy(keep_last=1), NOW) == []
    assert plan([], Policy(keep=1), NOW) == []


@pytest.mark.parametrize("policy, message", [
    (Policy(keep_daily=-2), "keep_daily=-2 is not a count"),
    (Policy(keep_within_days=-1.0), "keep_within_days=-1.0 is negative"),
    (Policy(keep=3, keep_daily=7), "keep and older_than_days cannot be combined"),
    (Policy(older_than_days=3, keep_labels=["v*"]), "keep and older_than_days cannot be combined"),
])
def test_bad_policies_are_refused(policy, message):
    with pytest.raises(RetentionError, match=message):
        plan(SERIES, policy, NOW)


def test_prune_dry_run_lists_what_would_go_and_deletes_nothing(tmp_path):
    """state=pruned on a real store: check mode keeps every manifest and object; the run deletes what it listed."""
    store = Store(str(tmp_path / "store"))
    store.init()
    made = []
    for created, label in (("2026-11-01T10:00:00Z", "v1.0.0"), ("2026-11-02T10:00:00Z", "scheduled/a"),
                           ("2026-11-02T11:00:00Z", "scheduled/b"), ("2026-11-03T10:00:00Z", None)):
        manifest = store.new_manifest(label=label, reason="test")
        manifest["created"] = created
        blob = store.put_bytes(("content of %s" % created).encode())
        manifest["components"] = [{"type": "test", "name": "data", "blobs": [blob]}]
        store.save(manifest)
        made.append((manifest["id"], blob))
    params = dict(store_path=store.root, owner="test@host", policy=Policy(keep_daily=1))

    dry = prune_checkpoints(CheckpointParams(check_mode=True, **params))

    assert dry["changed"] and dry["deleted"] == [made[1][0], made[2][0]]
    assert [item["id"] for item in dry["forgotten"]] == [made[2][0], made[1][0]]
    assert [(item["label"], item["reasons"]) for item in dry["kept"]] == [
        (None, ["newest", "daily 2026-11-03"]), ("v1.0.0", ["label matches v[0-9]*"])]
    assert store.ids() == [cid for cid, _blob in made] and "collected" not in dry
    assert all(store.has_blob(blob) for _cid, blob in made)

    real = prune_checkpoints(CheckpointParams(**params))

    assert real["deleted"] == dry["deleted"] and real["collected"]["objects"] == 2
    assert store.ids() == [made[0][0], made[3][0]]
    assert [store.has_blob(blob) for _cid, blob in made] == [True, False, False, True]
    assert prune_checkpoints(CheckpointParams(**params))["changed"] is False
