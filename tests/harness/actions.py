"""Run one of the collection's action plugins in-process, on the command line ansible-playbook would parse.

An action plugin that decides on the controller (refuse outside values, who may roll back) reads the
task's arguments, its task vars and ansible-playbook's parsed command line (``context.CLIARGS``: the
``-e`` arguments). :func:`command_line` parses OPTIONS with ansible-playbook's own parser (so the
extra vars carry the trust tags the command line gives them) and :func:`run_action` runs the action's
``run`` with a task of those arguments: no ``ansible-playbook`` process, no fork, no connection.
A failure is raised as the task would fail (``AnsibleActionFail``).
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, Mapping, Optional
from unittest import mock

from ansible import context
from ansible.cli.playbook import PlaybookCLI
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.task import Task
from ansible.utils.context_objects import CLIArgs
from ansible.utils.vars import load_extra_vars


def collection_module(collections_dir: Path, name: str) -> ModuleType:
    """``ansible_collections.gitops.rollback.NAME`` (``plugins.action.input_check``) imported from the
    collections path the tests run Ansible with (:func:`harness.collections_path`)."""
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))
    return importlib.import_module("ansible_collections.gitops.rollback." + name)


@contextmanager
def command_line(*options: str) -> Iterator[Dict[str, Any]]:
    """``ansible-playbook OPTIONS playbook.yml`` parsed into ``context.CLIARGS`` while the block runs;
    yields the extra vars ansible-playbook loads from its ``-e`` options."""
    cli = PlaybookCLI(["ansible-playbook", *options, "playbook.yml"])
    cli.init_parser()
    parsed = CLIArgs.from_options(cli.parser.parse_args(cli.args[1:]))
    with mock.patch.object(context, "CLIARGS", parsed), \
            mock.patch.object(load_extra_vars, "extra_vars", None, create=True):  # its cache of the process's -e
        yield load_extra_vars(DataLoader())


def extra_vars(*options: str) -> Dict[str, Any]:
    """The extra vars ``ansible-playbook OPTIONS`` loads."""
    with command_line(*options) as loaded:
        return loaded


def run_action(action_class: Any, args: Mapping[str, Any], task_vars: Optional[Mapping[str, Any]] = None,
               variable_manager_extra_vars: Optional[Mapping[str, Any]] = None,
               basedir: Optional[Path] = None) -> Dict[str, Any]:
    """Run ``action_class`` (an ``ActionModule``) as one task with ``args``; return its result.

    ``variable_manager_extra_vars`` is what the task's variable manager holds as extra vars (for an
    action that reads them raw); ``basedir`` is the loader's base directory (the playbook's).
    """
    task = Task.load({"action": "gitops.rollback.action", "args": dict(args)})
    manager = mock.Mock(extra_vars=dict(variable_manager_extra_vars or {}))
    loader = DataLoader()
    if basedir is not None:
        loader.set_basedir(str(basedir))
    with mock.patch.object(task, "get_variable_manager", return_value=manager):
        action = action_class(task, mock.Mock(), mock.Mock(), loader, None, None)
        return action.run(task_vars=dict(task_vars or {}))
