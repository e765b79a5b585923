# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action config_render: render the config repository's templates as of a tag and push them to the host.

Runs on the controller (the config repository and GitPython live there); each template goes through
ansible.builtin.template, so host variables, check mode and diff mode behave as they do there.
Documentation: plugins/modules/config_render.py.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.controller.git_templates import (GitConfigError, checkout_at,
                                                                                               destination, templates_in)

ARGUMENT_SPEC = {
    "repo": {"type": "path", "required": True},
    "version": {"type": "str", "required": True},
    "src": {"type": "str", "default": ""},
    "dest": {"type": "path", "required": True},
    "suffix": {"type": "str", "default": ".j2"},
    "mode": {"type": "raw", "default": "0644"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
}


class ActionModule(ActionBase):
    """Render templates from Git as of a version and copy them to the host."""

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            with checkout_at(args["repo"], args["version"], args["src"]) as (tree, commit):
                rendered = self._render_all(tree, commit, args, dict(task_vars or {}))
        except GitConfigError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        failed = [f for f in rendered if f["result"].get("failed")]
        result.update(
            changed=any(f["changed"] for f in rendered),
            commit=commit,
            version=args["version"],
            files=[{k: f[k] for k in ("path", "template", "changed")} for f in rendered],
        )
        diffs = [f["result"]["diff"] for f in rendered if f["result"].get("diff")]
        if diffs:
            result["diff"] = [d for diff in diffs for d in (diff if isinstance(diff, list) else [diff])]
        if failed:
            result.update(failed=True, msg="Rendering %s as of %s failed: %s" % (
                failed[0]["template"], args["version"], failed[0]["result"].get("msg")))
        elif not rendered:
            result.update(failed=True, msg="No %s templates under %r in %s at %s. Check src and suffix."
                          % (args["suffix"], args["src"] or "/", args["repo"], args["version"]))
        return result

    def _render_all(self, tree: str, commit: str, args: Dict[str, Any], task_vars: Dict[str, Any]) -> List[dict]:
        task_vars.update(config_render_version=args["version"], config_render_commit=commit)
        rendered = []
        for relative in templates_in(tree, args["suffix"]):
            path = os.path.join(args["dest"], destination(relative, args["suffix"]))
            outcome = self._template(os.path.join(tree, relative), path, args, task_vars)
            for diff in outcome.get("diff") or []:
                if isinstance(diff, dict) and "after_header" in diff:
                    diff["after_header"] = "%s (%s at %s)" % (path, relative, args["version"])
            rendered.append({"path": path, "template": relative, "changed": bool(outcome.get("changed")),
                             "result": outcome})
            if outcome.get("failed"):
                break
        return rendered

    def _template(self, src: str, dest: str, args: Dict[str, Any], task_vars: Dict[str, Any]) -> Dict[str, Any]:
        new_task = self._task.copy()
        new_task.args = {"src": src, "dest": dest, "mode": args["mode"]}
        for key in ("owner", "group"):
            if args.get(key):
                new_task.args[key] = args[key]
        action = self._shared_loader_obj.action_loader.get(
            "ansible.legacy.template", task=new_task, connection=self._connection, play_context=self._play_context,
            loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        return action.run(task_vars=task_vars)
