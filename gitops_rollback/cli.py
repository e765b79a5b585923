"""``gitops-rollback``: tag pushes drive checkpoints and rollbacks.

    gitops-rollback trigger v2 -i inventory.yml               # a ref (a bare name is a tag)
    gitops-rollback trigger --stdin-refs -i inventory.yml     # post-receive lines on stdin
    gitops-rollback trigger --payload push.json --event-type push --event-id <delivery> -i inventory.yml
    gitops-rollback watch /srv/git/config.git -i inventory.yml --interval 30
    gitops-rollback install-hook /srv/git/config.git -i inventory.yml
    gitops-rollback status | forget rollback/v1
    gitops-rollback audit verify [~/.local/state/gitops-rollback/audit.jsonl]
    gitops-rollback approve <run id> --target v2 --key-file KEY --approvals-file FILE
    gitops-rollback report --html report.html --prom gitops_rollback.prom [--log AUDIT_LOG]
    gitops-rollback schedule rollback --to v2.3.0 --at 2026-12-24T02:00Z -i inventory.yml
    gitops-rollback schedule checkpoint --every daily -i inventory.yml | list | cancel ID | run-due | timer
    gitops-rollback rollback --to previous -i inventory.yml [--layers database] [--components postgresql/app] [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import __version__
from .approve import ApproveError, add_parser as add_approve_parser
from .extravars import ExtraVarsError, parse_extra_vars
from .report import add_parser as add_report_parser
from .rollback import add_parser as add_rollback_parser
from .schedule import ScheduleError, add_parser as add_schedule_parser
from .collection import CollectionNotFound, collection_dir_option, find_collection, import_module_util, load_module_util
from .hooks import HookError, TagRef, install_hook, list_tags, peel, scrub_git_environment
from .runner import RunRequest, error_lines, extravars_for, prune_runs, run
from .state import StateError, StateFile, default_state_path
from . import tags

# Shown in --help, which never loads the collection; tests/unit check them against controller/tags.py.
HELP_RELEASE_PATTERNS = ("v*",)
HELP_ROLLBACK_PATTERN = "rollback/{target}"

LOG = logging.getLogger("gitops_rollback")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(RuntimeError):
    """Bad arguments or input: exit code 2."""


# ------------------------------------------------------------------------------------------ engine


@dataclasses.dataclass
class Settings:
    """What every run needs, from the command line."""

    inventory: Optional[Path]
    state: StateFile
    patterns: Any
    layers: List[str]
    extravars: Dict[str, Any]
    check: bool
    decide_only: bool
    force: bool
    repo: Optional[str]
    collections_path: Optional[str]
    keep_runs: int
    audit_log: str


class Engine:
    """Decides about events, records them in the state file and runs the playbooks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cancel_requested = False

    @property
    def runs_dir(self) -> Path:
        return self.settings.state.path.parent / "runs"

    def handle(self, event: tags.RefEvent) -> bool:
        """Decide about one event and run what it triggers; False when a run failed or the ref was refused."""
        s = self.settings
        if s.repo and tags.OBJECT_NAME.fullmatch(event.commit):  # anything else is refused by decide()
            event = dataclasses.replace(event, commit=peel(s.repo, event.commit))
        with s.state.transaction() as state:
            processed_tags = {} if s.force else state.tags
            processed_events = {} if s.force else state.events
            decision = tags.decide(event, s.patterns, processed_tags, processed_events)
            if decision.action == tags.REFUSE:
                LOG.warning("refused: %s Nothing runs for %s.", decision.reason, decision.ref)
                if not s.decide_only:
                    state.refuse(decision)
                return False
            if not decision.runs:
                LOG.info("ignored: %s", decision.reason)
                if not (s.decide_only or s.check):  # a dry run records nothing
                    state.see_event(event.event_id)
                return True
            if s.decide_only:
                LOG.info("would %s: %s", decision.action, decision.reason)
                return True
            ident = "%s-%s-%s" % (time.strftime("%Y%m%dT%H%M%S"), decision.action,
                                  re.sub(r"[^A-Za-z0-9._-]", "_", decision.tag))
            if not s.check:  # a dry run uses nothing up: the tag still runs for real later
                state.start(decision, ident)
        return self._run(decision, ident)

    def _run(self, decision: Any, ident: str) -> bool:
        s = self.settings
        if s.inventory is None:
            raise UsageError("--inventory is required to run a playbook (or give --decide-only).")
        LOG.info("%s (%s%s); run %s", decision.reason, "dry run, " if s.check else "",
                 f"event {decision.event_id}" if decision.event_id else f"source {decision.source}", ident)
        outcome = None
        try:
            request = RunRequest(playbook=decision.action, inventory=s.inventory,
                                 extravars=extravars_for(decision, s.layers, s.extravars),
                                 collection_root=find_collection(s.collections_path),
                                 run_dir=self.runs_dir / ident, ident=ident, check=s.check)
            outcome = run(request, say, cancel=lambda: self.cancel_requested)
            status, rc = outcome.status, outcome.rc
            problems = error_lines(request, outcome) if not outcome.ok else []
        except Exception as exc:  # pylint: disable=broad-except  # recorded, then reported
            status, rc, problems = "error", None, [f"could not run: {exc}"]
        if not s.check:
            with s.state.transaction() as state:
                state.finish(decision.tag, status, rc)
        if outcome is not None:
            LOG.log(logging.INFO if outcome.ok else logging.ERROR, "%s %s: %s (rc %s) in %.1f s; artifacts in %s",
                    decision.action, decision.tag, status, rc, outcome.duration, outcome.artifact_dir)
        if status != "successful":
            for line in problems:
                LOG.error("%s %s: %s", decision.action, decision.tag, line)
            self._audit_failure(decision, ident, status, rc, problems)
        prune_runs(self.runs_dir, s.keep_runs)
        return status == "successful"

    def _audit_failure(self, decision: Any, ident: str, status: str, rc: Optional[int], problems: List[str]) -> None:
        """Append a ``failed`` record (operation ``trigger``) to the audit log; say so when that fails too."""
        s = self.settings
        try:
            audit = import_module_util("controller.audit", s.collections_path)
            record = audit.make_record(
                "failed", "trigger", ident, action=decision.action, tag=decision.tag, ref=decision.ref,
                commit=decision.commit, event_id=decision.event_id, source=decision.source, status=status, rc=rc,
                error="; ".join(problems) or f"{decision.action} {decision.tag}: {status} (rc {rc})",
                dry_run=s.check, actor=audit.who())
            audit.append(str(Path(s.audit_log).expanduser()), record)
        except Exception as exc:  # pylint: disable=broad-except  # the run's failure is reported already
            LOG.error("the failure could not be written to the audit log %s: %s", s.audit_log, exc)


def say(line: str) -> None:
    """Progress goes to stdout (a pusher sees it as 'remote: ...')."""
    print(line, flush=True)


# ------------------------------------------------------------------------------------------ commands


def _read_input(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


def events_for_trigger(args: argparse.Namespace) -> List[tags.RefEvent]:
    """The events named on the command line, stdin or in a payload."""
    sources = [bool(args.ref), bool(args.stdin_refs), bool(args.payload)]
    if sum(sources) != 1:
        raise UsageError("Give exactly one of: a REF, --stdin-refs (post-receive lines) or --payload FILE.")
    if args.stdin_refs:
        return tags.parse_post_receive(sys.stdin.read())
    if args.payload:
        try:
            payload = json.loads(_read_input(args.payload))
        except ValueError as exc:
            raise UsageError(f"--payload {args.payload} is not JSON: {exc}") from exc
        return [tags.event_from_payload(payload, args.event_type or "", args.event_id or "")]
    new = args.new or (peel(args.repo, args.ref) if args.repo else "")
    return [tags.event_from_ref(args.ref, args.old or "", new if new != args.ref else "", args.event_id or "")]


def cmd_trigger(args: argparse.Namespace) -> int:
    scrub_git_environment()
    engine = Engine(settings_from(args))
    events = events_for_trigger(args)
    results = [engine.handle(event) for event in events]
    return EXIT_OK if all(results) else EXIT_FAILED


class Stopper:
    """SIGTERM/SIGINT: the first stops after the current run, the second cancels it."""

    def __init__(self, engine: Engine) -> None:
        self.event = threading.Event()
        self.engine = engine

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:  # pylint: disable=unused-argument
        name = signal.Signals(signum).name
        if self.event.is_set():
            LOG.warning("received %s again: cancelling the running playbook", name)
            self.engine.cancel_requested = True
            return
        LOG.info("received %s: stopping after the current run", name)
        self.event.set()


def new_tag_events(previous: Dict[str, TagRef], current: Sequence[TagRef]) -> List[tags.RefEvent]:
    """Events for tags created, moved or deleted between two listings."""
    events = []
    names = set()
    for tag in current:
        names.add(tag.name)
        before = previous.get(tag.name)
        if before is None or before.object != tag.object:
            events.append(tags.RefEvent(ref="refs/tags/" + tag.name, old=before.object if before else "",
                                        new=tag.object, commit=tag.commit, source="watch"))
    for name, before in previous.items():
        if name not in names:
            events.append(tags.RefEvent(ref="refs/tags/" + name, old=before.object, new="0" * 40, source="watch",
                                        deleted=True))
    return events


def cmd_watch(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    settings.repo = args.repository
    engine = Engine(settings)
    stopper = Stopper(engine)
    stopper.install()
    key = args.repository
    listed = list_tags(args.repository)
    with settings.state.transaction() as state:
        if key not in state.baselines and not args.catch_up:
            state.set_baseline(key, [t.name for t in listed])
            LOG.info("watching %s for the first time: its %d existing tags are the baseline, not triggers",
                     key, len(listed))
        known = dict(state.tags)
    previous = {t.name: t for t in listed if t.name in known}
    LOG.info("watching %s every %s s (%s)", key, args.interval, settings.patterns.describe())
    failed = False
    while not stopper.event.is_set():
        try:
            current = list_tags(args.repository)
        except HookError as exc:
            LOG.warning("%s; retrying in %s s", exc, args.interval)
            current = list(previous.values())
        for event in new_tag_events(previous, current):
            if stopper.event.is_set():
                break
            failed |= not engine.handle(event)
            previous = {**previous, event.tag: TagRef(event.tag, event.new, event.commit)} if not event.deleted \
                else {k: v for k, v in previous.items() if k != event.tag}
        if args.once:
            break
        stopper.event.wait(args.interval)
    LOG.info("watch stopped")
    return EXIT_FAILED if failed else EXIT_OK


def _secret_names(value: Any, secrets: Any, path: str = "") -> List[str]:
    """Where in an extra var's value a secret sits: token-like names and URLs with a password or token."""
    if isinstance(value, dict):
        return [found for key, item in value.items()
                for found in ([f"{path}{key}"] if secrets.SECRET_PARAMETER.search(str(key)) else
                              _secret_names(item, secrets, f"{path}{key}."))]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _secret_names(item, secrets, f"{path}{index}.")]
    return [path.rstrip(".")] if isinstance(value, str) and secrets.url_secrets(value) else []


def hook_extra_vars(items: Sequence[str], collections_path: Optional[str]) -> List[str]:
    """The hook's --extra-vars: @files by absolute path (the hook runs in the repository), inline secrets refused.

    The hook is a script every user of the machine can read (mode 0755): a password written in it is
    not a secret any more. Secrets go in a file only the pushers can read, given as @FILE.
    """
    secrets = import_module_util("common.secrets", collections_path)
    out = []
    for number, item in enumerate(items, 1):
        if item.startswith("@"):
            out.append("@" + str(Path(item[1:]).expanduser().resolve()))
            continue
        names = _secret_names(parse_extra_vars([item]), secrets)
        if names:
            raise UsageError(f"--extra-vars #{number} sets {', '.join(names)} inline: the hook would hold it in "
                             "clear in a script every user can read. Put it in a file only the pushers can read "
                             "and give --extra-vars @FILE.")
        out.append(item)
    return out


def trigger_args_for_hook(args: argparse.Namespace) -> List[str]:
    """The options the hook passes to ``trigger`` (absolute paths)."""
    out = ["--repo", str(Path(args.repository).resolve()),
           "--state", str(Path(args.state).resolve() if args.state else
                          Path(args.repository).resolve() / "gitops-rollback" / "state.json")]
    if args.inventory:
        out += ["--inventory", str(Path(args.inventory).resolve())]
    for pattern in args.release_pattern or []:
        out += ["--release-pattern", pattern]
    if args.rollback_pattern:
        out += ["--rollback-pattern", args.rollback_pattern]
    if args.label_pattern:
        out += ["--label-pattern", args.label_pattern]
    if args.layers:
        out += ["--layers", args.layers]
    for extra in hook_extra_vars(args.extra_vars or [], args.collections_path):
        out += ["--extra-vars", extra]
    # The hook runs with the pusher's environment, not this one: name the collection found now.
    out += ["--collections-path", collection_dir_option(find_collection(args.collections_path))]
    if args.audit_log:  # else the hook's user's default, as the playbooks it runs use
        out += ["--audit-log", str(Path(args.audit_log).expanduser().resolve())]
    if args.check:
        out.append("--check")
    out += ["--keep-runs", str(args.keep_runs)]
    return out


def cmd_install_hook(args: argparse.Namespace) -> int:
    if not args.inventory:
        raise UsageError("install-hook needs --inventory: the hook runs the playbooks against it.")
    hook = install_hook(args.repository, trigger_args_for_hook(args), force=args.force)
    LOG.info("installed %s: pushed tags now trigger checkpoints and rollbacks", hook)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    state = StateFile(args.state or default_state_path()).read()
    for tag, entry in sorted(state.tags.items(), key=lambda item: str(item[1].get("started"))):
        print(f"{tags.shown(tag)}\t{entry.get('action')}\t{entry.get('status')}\t{entry.get('started')}\t{entry.get('run', '')}")
    for entry in state.refused:  # recorded escaped
        print(f"{entry.get('ref')}\trefused\t{entry.get('reason')}\t{entry.get('time')}")
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    with StateFile(args.state or default_state_path()).transaction() as state:
        for tag in args.tags:
            LOG.info("%s %s", "forgot" if state.forget(tag) else "was not recorded:", tag)
    return EXIT_OK


DEFAULT_AUDIT_LOG = "~/.local/state/gitops-rollback/audit.jsonl"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit log's hash chain: exit 0 when intact, 1 naming the first broken record."""
    chain = load_module_util(find_collection(args.collections_path), "controller.auditchain")
    try:
        result = chain.verify(args.log, args.head)
    except chain.ChainError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(result.summary())
        for problem in result.problems:
            print("  %s" % problem["message"])
        for note in result.notes:
            print("  note: %s" % note)
    return EXIT_OK if result.ok else EXIT_FAILED


# ------------------------------------------------------------------------------------------ parsing


def audit_log_of(args: argparse.Namespace, extravars: Dict[str, Any]) -> str:
    """--audit-log, else ``gitops_rollback_audit_log`` from the extra vars (or its old name), else the default."""
    return str(getattr(args, "audit_log", None) or extravars.get("gitops_rollback_audit_log")
               or extravars.get("rollback_audit_log") or DEFAULT_AUDIT_LOG)


def settings_from(args: argparse.Namespace) -> Settings:
    extravars = parse_extra_vars(args.extra_vars or [])
    return Settings(
        inventory=Path(args.inventory).resolve() if args.inventory else None,
        state=StateFile(args.state or default_state_path()),
        patterns=tags.patterns_from(args.release_pattern or None, args.rollback_pattern, args.label_pattern),
        layers=[layer.strip() for layer in (args.layers or "").split(",") if layer.strip()],
        extravars=extravars,
        check=args.check,
        decide_only=getattr(args, "decide_only", False),
        force=getattr(args, "force", False),
        repo=getattr(args, "repo", None),
        collections_path=args.collections_path,
        keep_runs=args.keep_runs,
        audit_log=audit_log_of(args, extravars),
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", help="Ansible inventory (file or directory) the playbooks run against")
    parser.add_argument("--state", help="state file of processed tags and event ids "
                        "(default $GITOPS_ROLLBACK_STATE or ~/.local/state/gitops-rollback/state.json)")
    parser.add_argument("--release-pattern", action="append", metavar="GLOB",
                        help=f"tag glob that makes a checkpoint (repeatable; default {' '.join(HELP_RELEASE_PATTERNS)})")
    parser.add_argument("--rollback-pattern", metavar="PATTERN",
                        help=f"tag pattern that rolls back to {{target}} (default {HELP_ROLLBACK_PATTERN})")
    parser.add_argument("--label-pattern", metavar="REGEX",
                        help="regular expression every tag name must match in full; it narrows the label grammar "
                             "(ASCII letters, digits, . _ / -; at most 128 characters), never widens it")
    parser.add_argument("--layers", help="comma-separated layers a rollback restores (default: all)")
    parser.add_argument("-e", "--extra-vars", action="append", metavar="VARS",
                        help="extra vars for the playbook: KEY=VALUE, JSON or @file (repeatable)")
    parser.add_argument("--check", action="store_true", help="run the playbook with --check --diff (dry run)")
    parser.add_argument("--collections-path", help="collections path holding gitops.rollback "
                        "(default: this checkout, then where ansible-playbook looks: ANSIBLE_COLLECTIONS_PATH, "
                        "collections_path in ansible.cfg, ~/.ansible/collections)")
    parser.add_argument("--keep-runs", type=int, default=20, help="run directories (artifacts) kept (default 20)")
    parser.add_argument("--audit-log", help="audit log a failed run is recorded in (default: gitops_rollback_audit_log "
                        f"from --extra-vars, else {DEFAULT_AUDIT_LOG})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gitops-rollback", description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    trigger = sub.add_parser("trigger", help="decide what a pushed ref or webhook payload means and run it")
    trigger.add_argument("ref", nargs="?", help="ref or tag name (v2, refs/tags/rollback/v1)")
    trigger.add_argument("--old", help="object name before the push")
    trigger.add_argument("--new", help="object name after the push (zeros: deleted)")
    trigger.add_argument("--stdin-refs", action="store_true", help="read post-receive '<old> <new> <ref>' lines")
    trigger.add_argument("--payload", metavar="FILE", help="GitHub or GitLab webhook payload (JSON; - for stdin)")
    trigger.add_argument("--event-type", help="X-GitHub-Event / X-Gitlab-Event header (guessed when missing)")
    trigger.add_argument("--event-id", help="delivery id (X-GitHub-Delivery / X-Gitlab-Event-UUID) for dedup")
    trigger.add_argument("--repo", help="repository the refs are in (to resolve annotated tags to commits)")
    trigger.add_argument("--force", action="store_true", help="run even if the tag or event was processed")
    trigger.add_argument("--decide-only", action="store_true", help="print the decision, run nothing")
    _common(trigger)
    trigger.set_defaults(func=cmd_trigger)

    watch = sub.add_parser("watch", help="poll a repository for new tags and trigger each once")
    watch.add_argument("repository", help="local repository path or remote URL")
    watch.add_argument("--interval", type=float, default=30.0, help="seconds between polls (default 30)")
    watch.add_argument("--once", action="store_true", help="poll once and exit")
    watch.add_argument("--catch-up", action="store_true",
                       help="on the first watch of a repository, trigger its existing tags too")
    watch.add_argument("--decide-only", action="store_true", help="print decisions, run nothing")
    _common(watch)
    watch.set_defaults(func=cmd_watch)

    hook = sub.add_parser("install-hook", help="install a post-receive hook in a bare repository")
    hook.add_argument("repository", help="path of the (bare) repository tags are pushed to")
    hook.add_argument("--force", action="store_true", help="replace a post-receive hook not written by us")
    _common(hook)
    hook.set_defaults(func=cmd_install_hook)

    status = sub.add_parser("status", help="list processed tags from the state file")
    status.add_argument("--state", help="state file")
    status.set_defaults(func=cmd_status)

    forget = sub.add_parser("forget", help="drop tags from the state file so they can run again")
    forget.add_argument("tags", nargs="+")
    forget.add_argument("--state", help="state file")
    forget.set_defaults(func=cmd_forget)

    audit = sub.add_parser("audit", help="check the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="verify the audit log's hash chain; name the first broken record",
                                  description="Exit 0 when every record chains to the one before it and the "
                                  "head file agrees; 1 naming the first altered, missing or damaged record.")
    verify.add_argument("log", nargs="?", default=DEFAULT_AUDIT_LOG, help="audit log (default %(default)s)")
    verify.add_argument("--head", help="head file (default: the log's path + .head)")
    verify.add_argument("--json", action="store_true", help="print every problem as JSON")
    verify.add_argument("--collections-path", help="collections path holding gitops.rollback")
    verify.set_defaults(func=cmd_audit_verify)

    add_approve_parser(sub)
    add_report_parser(sub)
    add_rollback_parser(sub)
    add_schedule_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gitops-rollback`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="gitops-rollback: %(message)s", force=True)
    tags.prefer(getattr(args, "collections_path", None))
    try:
        return int(args.func(args))
    except (UsageError, ExtraVarsError) as exc:
        LOG.error("%s", exc)
        return EXIT_USAGE
    except (StateError, HookError, CollectionNotFound, ApproveError, ScheduleError) as exc:
        LOG.error("%s", exc)
        return EXIT_FAILED
    except Exception as exc:  # pylint: disable=broad-except  # _tags' errors; anything else is a bug, shown
        if tags.is_tag_event_error(exc):
            LOG.error("%s", exc)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
