#!/usr/bin/env bash
# Development and test entry point for the gitops.rollback collection.
#
#   ./dev.sh test     everything, with a summary table (non-zero if any part fails); sanity, units,
#                     lint, build and doc run alongside e2e, at a lower priority, their output after it
#   ./dev.sh test --fast   units and component tests only (no ansible-playbook runs, nor the long ones
#                     marked deep): everyday work
#   ./dev.sh demo     ansible-playbook playbooks/demo.yml -i inventories/demo/hosts.yml
#   ./dev.sh syspkgs|sanity|units|lint|build|doc|component|e2e   one part (e2e: all of tests/integration)
#   ./dev.sh venv     only create/refresh the virtualenv and print its path
#   ./dev.sh shell    a shell with the virtualenv and ANSIBLE_COLLECTIONS_PATH set
#
# Set-up is automatic and idempotent: a virtualenv with the dependencies from pyproject.toml,
# and a copy of the collection under $BUILD/ansible_collections/gitops/rollback (ansible-test
# needs that layout). This script never installs system packages; .ci/run does.
#
# Environment:
#   GITOPS_ROLLBACK_VENV          virtualenv (default ~/.cache/gitops-rollback/venv-<hash of pyproject.toml>)
#   GITOPS_ROLLBACK_BUILD         build dir, kept (default: a temporary ~/.cache/gitops-rollback/build.XXXXXX)
#   GITOPS_ROLLBACK_PYTHON        python used to create the virtualenv (default python3)
#   GITOPS_ROLLBACK_E2E_WORKERS   pytest-xdist workers for e2e (default: none, one process)
#   GITOPS_ROLLBACK_PYTEST_ARGS   extra pytest arguments for e2e (e.g. "-k checkpoint -x")
#   GITOPS_ROLLBACK_SERIAL=1      ./dev.sh test runs its parts one after the other
#   GITOPS_ROLLBACK_MARK          pytest -m expression of the e2e/component part (component: "component";
#                                 --fast: "component and not deep", the long fault and Terraform tests out)
#   GITOPS_ROLLBACK_UNITS=pytest  units in one plain pytest process instead of ansible-test units
#                                 (the default of --fast)
#   GITOPS_ROLLBACK_LANE_UNIT_WORKERS  ansible-test units workers in the side lane (default 1; 0: one per CPU)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAMESPACE=gitops
NAME=rollback
TEST_PYTHON=3.11
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gitops-rollback"
PYPROJECT_HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-12)"
VENV="${GITOPS_ROLLBACK_VENV:-$CACHE/venv-$PYPROJECT_HASH}"
# Each run gets its own copy of the collection (runs may overlap in a shared working tree),
# removed on exit; a GITOPS_ROLLBACK_BUILD given by the user is reused and kept.
if [[ -n "${GITOPS_ROLLBACK_BUILD:-}" ]]; then
    BUILD="$GITOPS_ROLLBACK_BUILD"
    trap 'stop_side_lane' EXIT
else
    mkdir -p "$CACHE"
    BUILD="$(mktemp -d "$CACHE/build.XXXXXX")"
    trap 'stop_side_lane; rm -rf "$BUILD"' EXIT
fi
COLLECTION_DIR="$BUILD/ansible_collections/$NAMESPACE/$NAME"

# Debian packages for the real servers the e2e tests start: "check|package".
SYSTEM_PACKAGES=(
    "command -v sshd >/dev/null || test -x /usr/sbin/sshd|openssh-server"
    "command -v ssh >/dev/null|openssh-client"
    "compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null|postgresql"
    "command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd|mariadb-server"
    "command -v sqlite3 >/dev/null|sqlite3"
    "command -v rsync >/dev/null|rsync"
    "command -v git >/dev/null|git"
    "command -v prometheus >/dev/null|prometheus"
    "command -v nginx >/dev/null || test -x /usr/sbin/nginx|nginx"
    "command -v chromium >/dev/null|chromium"
    "command -v etcd >/dev/null|etcd-server"
    "command -v etcdctl >/dev/null|etcd-client"
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[1;33m!!! %s\033[0m\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------

# How the checkout is installed in the virtualenv, part of its stamp: a virtualenv set up another way is
# set up again. "static-path": the editable install is a plain path entry in a .pth file (setuptools'
# compat mode), not an import hook: the hook's import costs every Python process ~12 ms of CPU at start,
# and the tests start thousands (each module run on a test host is one; docs/benchmarks.md).
VENV_RECIPE="$PYPROJECT_HASH+static-path"

ensure_venv() {
    local stamp="$VENV/.gitops-rollback-stamp" want have=""
    want="$VENV_RECIPE $ROOT"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ -x "$VENV/bin/ansible-test" && "$have" == "$want" ]]; then
        export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
        return 0
    fi
    # Made for another checkout with the same dependencies (worktrees share a virtualenv): used as
    # it is, never reinstalled from here, so runs in other checkouts keep theirs. The tests import
    # gitops_rollback from the checkout they run in.
    if [[ -x "$VENV/bin/ansible-test" && "${have%% *}" == "$VENV_RECIPE" ]]; then
        export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
        return 0
    fi
    say "Setting up virtualenv $VENV"
    mkdir -p "$(dirname "$VENV")"
    (
        flock 9 # two runs setting up the same virtualenv wait for each other
        if [[ ! -x "$VENV/bin/python" ]]; then
            "${GITOPS_ROLLBACK_PYTHON:-python3}" -m venv "$VENV"
        fi
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
        # A setuptools without compat mode gets the default editable install (an import hook).
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "${ROOT}[dev]" \
            --config-settings editable_mode=compat \
            || "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "${ROOT}[dev]"
        printf '%s' "$want" >"$stamp"
    ) 9>"$VENV.lock"
    export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
}

# Copy the tracked and untracked-but-not-ignored files to $COLLECTION_DIR (a fresh copy each
# time, so deleted files do not linger). ansible-test wants ansible_collections/<ns>/<name>.
build_tree() {
    say "Copying the collection to $COLLECTION_DIR"
    rm -rf "$COLLECTION_DIR"
    mkdir -p "$COLLECTION_DIR"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # -c lists files still in the index after a delete in the working tree: skip those.
        (cd "$ROOT" && git ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done) \
            | rsync -a --from0 --files-from=- "$ROOT/" "$COLLECTION_DIR/"
    else
        rsync -a --exclude=.git --exclude=tests/output --exclude=__pycache__ \
            --exclude=.pytest_cache --exclude=.ansible "$ROOT/" "$COLLECTION_DIR/"
    fi
    export ANSIBLE_COLLECTIONS_PATH="$BUILD"
}

# ---------------------------------------------------------------------------------------------
# OFFLINE BOOTSTRAP for ansible-test (harmless when online).
# ansible-test creates a virtualenv per sanity test and bootstraps pip in it with a get-pip
# script downloaded from ci-files.testing.ansible.com. Without internet access that download
# fails ("... does not have pip available"). ansible-test uses a cached script when one exists at
# ~/.ansible/test/cache/get_pip_<ver>.py, <ver> being the pip version named in
# ansible_test/_internal/python_requirements.py. We write such a script that installs that pip
# from a wheel fetched from PyPI with `pip download` (the package registry is reachable).
# An existing cached script (ours or the real one) is left alone.
# ---------------------------------------------------------------------------------------------
offline_bootstrap() {
    local pip_version cache_file wheels
    pip_version="$(python - <<'EOF'
import pathlib, re, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
match = re.search(r"""\bpip=['"]([0-9][0-9.]*)['"]""", src.read_text())
print(match.group(1) if match else "")
EOF
)"
    if [[ -z "$pip_version" ]]; then
        warn "offline bootstrap: no pip version found in ansible-test's python_requirements.py; skipped"
        return 0
    fi
    cache_file="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    [[ -s "$cache_file" ]] && return 0
    wheels="$CACHE/wheels"
    mkdir -p "$wheels" "$(dirname "$cache_file")"
    if ! compgen -G "$wheels/pip-$pip_version-*.whl" >/dev/null; then
        say "offline bootstrap: downloading pip $pip_version wheel to $wheels"
        python -m pip download --disable-pip-version-check -q --no-deps -d "$wheels" "pip==$pip_version"
    fi
    say "offline bootstrap: writing $cache_file"
    python "$ROOT/.ci/offline_get_pip.py" "$pip_version" "$wheels" "$cache_file"
}

# ---------------------------------------------------------------------------------------------
# Parts. Each returns 0 (pass), 1 (fail) or 3 (not run: nothing to test yet).
# ---------------------------------------------------------------------------------------------
NOT_RUN=3
MISSING_PACKAGES=()

part_syspkgs() {
    local entry check pkg
    MISSING_PACKAGES=()
    for entry in "${SYSTEM_PACKAGES[@]}"; do
        check="${entry%|*}"
        pkg="${entry##*|}"
        eval "$check" || MISSING_PACKAGES+=("$pkg")
    done
    if ((${#MISSING_PACKAGES[@]})); then
        warn "Missing system packages for the e2e tests. Install them with:"
        warn "    apt-get update && apt-get install -y ${MISSING_PACKAGES[*]}"
        warn "(or run .ci/run as root, which does this)"
        return 1
    fi
    echo "All system packages present: sshd, ssh, PostgreSQL server, mariadbd, sqlite3, rsync, git"
}

# In the side lane of ./dev.sh test the parts run beside e2e, so what counts there is the CPU they
# take from it, not their own wall time. Each pytest-xdist worker of ansible-test units imports and
# collects every test again, so there units run with one worker (6 % less CPU, docs/benchmarks.md).
# pylint keeps one process per CPU (ansible-test passes --jobs 0): on one CPU it took 19 % more CPU.
in_lane() { [[ -n "$RESULTS_DIR" && "${GITOPS_ROLLBACK_LANE:-}" == 1 ]]; }

part_sanity() {
    offline_bootstrap
    (cd "$COLLECTION_DIR" && ansible-test sanity --python "$TEST_PYTHON" --requirements --color=yes)
}

part_units() {
    if [[ -z "$(find "$COLLECTION_DIR/tests/unit" -name 'test_*.py' -print -quit 2>/dev/null)" ]]; then
        warn "UNITS NOT RUN: there is no tests/unit/**/test_*.py yet"
        return "$NOT_RUN"
    fi
    if [[ "${GITOPS_ROLLBACK_UNITS:-}" == pytest ]]; then
        # The same tests in one plain pytest process: no per-test fork, no requirements install,
        # no second run for the controller's plugins (ansible-test units spends most of its time there).
        (cd "$COLLECTION_DIR" && PYTHONPATH="$BUILD${PYTHONPATH:+:$PYTHONPATH}" \
            python -m pytest -q -p no:cacheprovider --strict-markers tests/unit)
        return
    fi
    offline_bootstrap
    local workers=()
    in_lane && workers=(--num-workers "${GITOPS_ROLLBACK_LANE_UNIT_WORKERS:-1}")
    (cd "$COLLECTION_DIR" && ansible-test units --python "$TEST_PYTHON" --requirements "${workers[@]}" --color=yes)
}

part_lint() {
    local dirs=() d
    for d in roles playbooks molecule changelogs; do [[ -d "$ROOT/$d" ]] && dirs+=("$d"); done
    if ((${#dirs[@]} == 0)); then
        warn "LINT NOT RUN: no roles/ or playbooks/ yet"
        return "$NOT_RUN"
    fi
    (cd "$ROOT" && ansible-lint --profile production "${dirs[@]}")
}

part_build() {
    local out rc=0
    out="$(mktemp -d)"
    (cd "$COLLECTION_DIR" && ansible-galaxy collection build --output-path "$out") || rc=1
    ls -l "$out"
    rm -rf "$out"
    return "$rc"
}

# ansible-doc exits 0 even when a plugin is missing or its docs do not load, so check the JSON
# it prints and its warnings.
doc_one() {
    local type="$1" fqcn="$2" out err rc=0
    err="$(mktemp)"
    out="$(ansible-doc -t "$type" --json "$fqcn" 2>"$err")" || rc=$?
    if ((rc == 0)) && ! grep -qE 'was not found|Error loading|\[ERROR\]|^ERROR' "$err" \
        && python -c 'import json,sys; d=json.loads(sys.stdin.read())[sys.argv[1]]; assert d.get("doc") or d.get("entry_points")' "$fqcn" <<<"$out" 2>/dev/null \
        && ansible-doc -t "$type" "$fqcn" >/dev/null 2>>"$err"; then
        echo "ok   ansible-doc -t $type $fqcn"
        rm -f "$err"
        return 0
    fi
    warn "FAIL ansible-doc -t $type $fqcn (rc $rc):"
    tail -20 "$err" >&2
    rm -f "$err"
    return 1
}

# The same checks as doc_one for every plugin of one type in two ansible-doc runs (JSON, then text)
# instead of two per plugin (each run costs a second of start-up); when anything is wrong, each
# plugin is checked alone so the failure names it. Prints the number of failures.
doc_type() {
    local type="$1" out err rc=0 fqcn failed=0
    shift
    err="$(mktemp)"
    out="$(ansible-doc -t "$type" --json "$@" 2>"$err")" || rc=$?
    if ((rc == 0)) && ! grep -qE 'was not found|Error loading|\[ERROR\]|^ERROR' "$err" \
        && python -c 'import json,sys; d=json.loads(sys.stdin.read()); assert all(d[n].get("doc") or d[n].get("entry_points") for n in sys.argv[1:])' "$@" <<<"$out" 2>/dev/null \
        && ansible-doc -t "$type" "$@" >/dev/null 2>>"$err" \
        && ! grep -qE 'was not found|Error loading|\[ERROR\]|^ERROR' "$err"; then
        for fqcn in "$@"; do echo "ok   ansible-doc -t $type $fqcn"; done
    else
        for fqcn in "$@"; do doc_one "$type" "$fqcn" || failed=$((failed + 1)); done
        if ((failed == 0)); then
            warn "FAIL ansible-doc -t $type with every $type at once (each alone passes):"
            tail -20 "$err" >&2
            failed=1
        fi
    fi
    rm -f "$err"
    return "$failed"
}

part_doc() {
    local type_dir type f name count=0 failed=0 rc
    local -A names=()
    for type_dir in "$COLLECTION_DIR"/plugins/*/; do
        [[ -d "$type_dir" ]] || continue
        type="$(basename "$type_dir")"
        case "$type" in
            modules) type=module ;;
            module_utils | doc_fragments | plugin_utils | action | terminal | __pycache__) continue ;;
        esac
        for f in "$type_dir"*; do
            name="$(basename "$f")"
            case "$type:$name" in
                *:__init__.py | *:__pycache__) continue ;;
                filter:*.py | test:*.py) continue ;; # these are documented per function in <name>.yml
                filter:*.yml | filter:*.yaml | test:*.yml | test:*.yaml) name="${name%.y*ml}" ;;
                *:*.py | *:*.ps1) name="${name%.*}" ;;
                *) continue ;;
            esac
            count=$((count + 1))
            names[$type]+="$NAMESPACE.$NAME.$name "
        done
    done
    # Roles with an argument spec are documented too.
    for f in "$COLLECTION_DIR"/roles/*/meta/argument_specs.y*ml; do
        [[ -e "$f" ]] || continue
        name="$(basename "$(dirname "$(dirname "$f")")")"
        count=$((count + 1))
        names[role]+="$NAMESPACE.$NAME.$name "
    done
    if ((count == 0)); then
        warn "DOC NOT RUN: no documented plugins or roles yet"
        return "$NOT_RUN"
    fi
    for type in "${!names[@]}"; do
        rc=0
        # shellcheck disable=SC2086  # one word per plugin name
        doc_type "$type" ${names[$type]} || rc=$?
        failed=$((failed + rc))
    done
    echo "ansible-doc: $count checked, $failed failed"
    ((failed == 0))
}

# The tests under tests/integration that start no Ansible run (marked ``component`` by
# tests/integration/conftest.py): the engine and the modules against the real servers.
part_component() {
    local rc=0
    if ((${#MISSING_PACKAGES[@]})); then
        warn "COMPONENT FAILED (not run): missing system packages: ${MISSING_PACKAGES[*]}"
        return 1
    fi
    GITOPS_ROLLBACK_MARK="${GITOPS_ROLLBACK_MARK:-component}" part_e2e || rc=$?
    return "$rc"
}

part_e2e() {
    local args=() rc=0
    if ((${#MISSING_PACKAGES[@]})); then
        warn "E2E FAILED (not run): missing system packages: ${MISSING_PACKAGES[*]}"
        return 1
    fi
    if [[ -n "${GITOPS_ROLLBACK_E2E_WORKERS:-}" ]]; then
        # Each module runs whole on one worker, the longest first, so a module-scoped fixture (the
        # demo run) is made once (tests/harness/scheduling.py).
        args+=(-n "$GITOPS_ROLLBACK_E2E_WORKERS")
    fi
    args+=(--durations=30)  # the slowest tests, where the suite's time goes
    [[ -z "${GITOPS_ROLLBACK_MARK:-}" ]] || args+=(-m "$GITOPS_ROLLBACK_MARK")
    # shellcheck disable=SC2206  # word splitting of user-given extra args is intended
    args+=(${GITOPS_ROLLBACK_PYTEST_ARGS:-})
    if [[ ! -d "$ROOT/tests/integration" ]]; then
        warn "E2E FAILED: there is no tests/integration directory, so no end-to-end tests"
        return 5
    fi
    # The path is explicit: with testpaths missing, pytest would search the whole tree.
    local paths=(tests/integration)
    [[ " ${GITOPS_ROLLBACK_PYTEST_ARGS:-} " == *" tests/"* ]] && paths=()  # the caller named what to run
    (cd "$ROOT" && python -m pytest "${args[@]}" "${paths[@]}") || rc=$?
    if ((rc == 5)); then
        warn "E2E FAILED: pytest collected no tests under tests/integration (exit code 5)"
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
SUMMARY=()
RESULTS_DIR=""   # when set, run_part also writes its exit code and summary line to $RESULTS_DIR/<part>

run_part() {
    local part="$1" start rc=0 result line
    say "[$part]"
    start=$SECONDS
    "part_$part" || rc=$?
    case "$rc" in
        0) result=PASS ;;
        "$NOT_RUN") result="NOT RUN" ;;
        *) result="FAIL (rc $rc)" ;;
    esac
    line="$(printf '%-9s %-14s %5ss' "$part" "$result" "$((SECONDS - start))")"
    SUMMARY+=("$line")
    [[ -z "$RESULTS_DIR" ]] || printf '%s\n%s\n' "$rc" "$line" >"$RESULTS_DIR/$part"
    return "$rc"
}

print_summary() {
    printf '\n\033[1m%-9s %-14s %6s\033[0m\n' part result time
    printf '%s\n' "${SUMMARY[@]}"
}

# The side lanes: parts that need the CPU but wait on nothing (sanity, units, lint, build, doc) run in two
# lanes, each one part after the other in its own process group at a lower priority, each part into
# $RESULTS_DIR/<part>.log, while the test parts that mostly wait on servers (e2e, component) run in the
# foreground. Two lanes, not one: when e2e ends, what is left of the side parts runs on both cores (one lane
# left a single-process part, lint or units, alone on one core for the last 15-20 s; docs/benchmarks.md).
SIDE_LANE_PIDS=()
SECOND_LANE=(units build doc)

start_side_lane() {
    GITOPS_ROLLBACK_BUILD="$BUILD" setsid nice -n 10 "$ROOT/dev.sh" _lane "$RESULTS_DIR" "$@" </dev/null &
    SIDE_LANE_PIDS+=("$!")
}

stop_side_lane() {
    local pid
    for pid in "${SIDE_LANE_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -- "-$pid" 2>/dev/null || true
        fi
    done
    SIDE_LANE_PIDS=()
}

run_lane() {
    local part
    RESULTS_DIR="$1"
    shift
    export ANSIBLE_COLLECTIONS_PATH="$BUILD"  # the copy the foreground made (build_tree)
    export GITOPS_ROLLBACK_LANE=1
    for part in "$@"; do
        run_part "$part" >"$RESULTS_DIR/$part.log" 2>&1 || true
    done
}

# Run the parts (syspkgs first, alone); with a side lane, the side parts run alongside the others
# and their output is printed after them. SUMMARY ends up in the order of the parts.
run_parts() {
    local -a side=() fore=() parts=("$@")
    local part
    [[ "${GITOPS_ROLLBACK_SERIAL:-}" == 1 ]] || for part in "${parts[@]}"; do
        case "$part" in
            syspkgs | e2e | component) ;;
            *) side+=("$part") ;;
        esac
    done
    RESULTS_DIR="$BUILD/results"
    rm -rf "$RESULTS_DIR"
    mkdir -p "$RESULTS_DIR"
    for part in "${parts[@]}"; do [[ " ${side[*]} " == *" $part "* ]] || fore+=("$part"); done
    run_part "${fore[0]}" || true  # syspkgs: the e2e and component parts use what it found
    if ((${#side[@]})); then
        say "${side[*]} run alongside ${fore[*]:1} (lower priority, two lanes); their output follows (GITOPS_ROLLBACK_SERIAL=1: one after the other)"
        local -a first=() second=()
        for part in "${side[@]}"; do
            if [[ " ${SECOND_LANE[*]} " == *" $part "* ]]; then second+=("$part"); else first+=("$part"); fi
        done
        # sanity and units each write ansible-test's offline pip bootstrap when it is missing: once here, before
        # both lanes start (--fast runs no sanity, and its units need no bootstrap)
        [[ " ${side[*]} " == *" sanity "* ]] && offline_bootstrap
        ((${#first[@]})) && start_side_lane "${first[@]}"
        ((${#second[@]})) && start_side_lane "${second[@]}"
    fi
    for part in "${fore[@]:1}"; do run_part "$part" || true; done
    if ((${#side[@]})); then
        local pid
        for pid in "${SIDE_LANE_PIDS[@]}"; do wait "$pid" || true; done
        SIDE_LANE_PIDS=()
        for part in "${side[@]}"; do
            cat "$RESULTS_DIR/$part.log" 2>/dev/null || warn "[$part] left no output"
        done
    fi
    SUMMARY=()
    for part in "${parts[@]}"; do
        if [[ -f "$RESULTS_DIR/$part" ]]; then
            SUMMARY+=("$(sed -n 2p "$RESULTS_DIR/$part")")
        else
            SUMMARY+=("$(printf '%-9s %-14s %5ss' "$part" "FAIL (no result)" 0)")
            printf '1\n' >"$RESULTS_DIR/$part"
        fi
    done
}

usage() {
    sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        test)
            local failed=0 not_run=0 part rc start=$SECONDS parts=(syspkgs sanity units lint build doc e2e)
            if [[ "${1:-}" == --fast ]]; then
                parts=(syspkgs units component)
                export GITOPS_ROLLBACK_E2E_WORKERS="${GITOPS_ROLLBACK_E2E_WORKERS:-2}"  # they mostly wait on servers
                export GITOPS_ROLLBACK_UNITS="${GITOPS_ROLLBACK_UNITS:-pytest}"
                export GITOPS_ROLLBACK_MARK="${GITOPS_ROLLBACK_MARK:-component and not deep}"
            elif [[ -n "${1:-}" ]]; then
                usage >&2
                return 2
            fi
            ensure_venv
            build_tree
            run_parts "${parts[@]}"
            for part in "${parts[@]}"; do
                rc="$(head -1 "$RESULTS_DIR/$part")"
                if ((rc == NOT_RUN)); then not_run=1; elif ((rc != 0)); then failed=1; fi
            done
            print_summary
            printf 'total %ss\n' "$((SECONDS - start))"
            if ((not_run)); then
                warn "Some parts were NOT RUN (nothing to test yet): they did not pass."
            fi
            if ((failed)); then
                printf '\033[1;31mFAILED\033[0m\n'
                return 1
            fi
            printf '\033[1;32mOK\033[0m\n'
            ;;
        syspkgs) part_syspkgs ;;
        _lane)  # internal: the side lane of ./dev.sh test (see run_parts)
            ensure_venv
            run_lane "$@"
            ;;
        sanity | units | lint | build | doc | component | e2e)
            local rc=0
            ensure_venv
            build_tree
            [[ "$cmd" == e2e || "$cmd" == component ]] && { part_syspkgs >/dev/null 2>&1 || true; }
            run_part "$cmd" || rc=$?
            print_summary
            ((rc == 0 || rc == NOT_RUN))
            ;;
        demo)
            ensure_venv
            build_tree
            cd "$ROOT"
            ansible-playbook playbooks/demo.yml -i inventories/demo/hosts.yml "$@"
            ;;
        venv)
            ensure_venv
            echo "$VENV"
            ;;
        shell)
            ensure_venv
            build_tree
            cd "$ROOT"
            echo "ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH (removed when this shell exits)"
            "${SHELL:-bash}" -i
            ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            return 2
            ;;
    esac
}

main "$@"
