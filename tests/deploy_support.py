"""Shared by the deploy tests: external tools that CI must have, and PromQL metric names."""

from __future__ import annotations

import os
import re
import shutil

import pytest

# Words in PromQL that look like metric names but are not.
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "offset", "bool", "atan2", "inf", "nan", "start", "end"}


def require_tool(name: str) -> str:
    """The tool's path; skip when it is absent locally, fail when absent in CI (.ci/run installs it)."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if found:
        return found
    unavailable(f"{name} is not installed (.ci/run installs it with apt-get)")


def unavailable(reason: str) -> None:
    """A deploy check cannot run here: a failure in CI (CI=true), where it must run; a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"in CI: {reason}")
    pytest.skip(reason)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names, label values, durations or Grafana variables."""
    grafana = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
    if grafana:  # Grafana's label_values(SELECTOR, LABEL)
        expr = grafana.group(1)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\boffset\s+\S+", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def exposition_names(text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (what PromQL can select)."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][\w:]*", line).group(0))
    return names
