# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of values that come from outside (refs, payloads, survey answers, extra vars) before Ansible templates them.

A label variable (``checkpoint_label``) must obey the label grammar of ``common.labels.py``, a target
variable (``rollback_to``, ``guard_rollback_to``) that grammar or its relative targets (``previous~2:v*``);
any other outside variable (a webhook payload, a commit, a reason) may hold any text, but not template
text that Ansible would render. The caller (the ``input_check`` action)
reads the variables *raw*, before any templating, and says which strings Ansible trusts as
templates. Pure functions, standard library only.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..common.labels import GRAMMAR, TARGET_GRAMMAR, escape, label_problem, target_problem

TEMPLATE_MARKERS = ("{{", "{%", "{#")
#: Label variables that name a rollback target: a relative target (previous, previous~2:v*) is one too.
TARGET_VARIABLES = ("rollback_to", "guard_rollback_to")
JINJA_HEADER = "#jinja2:"


def is_template_text(text: str) -> bool:
    """Tell whether ``text`` holds Jinja markers (or starts with a Jinja overrides header)."""
    return text.startswith(JINJA_HEADER) or any(marker in text for marker in TEMPLATE_MARKERS)


def _strings(value: Any, path: str) -> Iterator[Tuple[str, str]]:
    """(path, string) of every string in ``value`` (keys too), depth first."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            where = "%s[%s]" % (path, escape(key, 40)) if isinstance(key, str) else "%s[%r]" % (path, key)
            if isinstance(key, str):
                yield where, key
            yield from _strings(item, where)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, "%s[%d]" % (path, index))


def label_variable_problem(name: str, value: Any, pattern: Optional[str] = None) -> Optional[str]:
    """Why the label variable ``name`` holding ``value`` is refused, or None (unset and empty pass)."""
    if value is None or value == "":
        return None
    if name in TARGET_VARIABLES:
        problem = target_problem(value, pattern)
        return None if problem is None else "%s %s is refused: %s. A target is %s." % (
            name, escape(value), problem, TARGET_GRAMMAR)
    problem = label_problem(value, pattern)
    if problem is None:
        return None
    return "%s %s is refused: %s. A label (checkpoint id or Git tag) is %s." % (name, escape(value), problem, GRAMMAR)


def template_text_problem(name: str, value: Any, trusted: Callable[[str], bool]) -> Optional[str]:
    """Why the outside variable ``name`` is refused: a string in it that Ansible trusts holds template text."""
    for where, text in _strings(value, name):
        if is_template_text(text) and trusted(text):
            return ("%s holds template text that Ansible would render: %s. Values from refs, webhook payloads, "
                    "surveys and the command line must reach Ansible as data: pass them with the !unsafe YAML tag "
                    "(AWX does so for survey answers and webhook payloads; gitops-rollback trigger does so for "
                    "every value), never as plain extra vars." % (where, escape(text)))
    return None


def input_problems(variables: Mapping[str, Any], labels: Sequence[str], data: Sequence[str],
                   trusted: Callable[[str], bool], pattern: Optional[str] = None) -> List[str]:
    """Every problem of the outside variables: ``labels`` name label variables, ``data`` any other ones."""
    problems = []
    for name in labels:
        if name in variables:
            problem = label_variable_problem(name, variables[name], pattern)
            if problem:
                problems.append(problem)
    for name in data:
        if name in variables:
            problem = template_text_problem(name, variables[name], trusted)
            if problem:
                problems.append(problem)
    return problems
