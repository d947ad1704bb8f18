"""The dashboard's variables are honoured: every query over a metric that has a `model`, `intent` or
`deployment` label filters on the matching variable (several panels ignored them)."""

from __future__ import annotations

import re

from tests.test_deploy import _dashboard_queries, _defined_metrics

VARIABLES = {"model": "$model", "intent": "$intent", "deployment": "$deployment"}
SELECTOR = re.compile(r"\b(gateway_[a-z_]+)(\{[^}]*\})?")
# Labels with another name for the same thing.
ALIASES = {("gateway_fallbacks_total", "deployment"): "from_deployment"}
# Cost per request divides by requests, which have no deployment: a deployment filter on the cost alone would
# make a per-request figure of a part of the cost.
EXEMPT = {("Cost per request by intent", "deployment")}


def test_every_panel_filters_on_the_variables_its_metrics_have():
    defined = _defined_metrics()
    ignored = []
    for where, expr, _ in _dashboard_queries():
        if where.startswith("variable "):
            continue
        for name, matchers in SELECTOR.findall(expr):
            if name not in defined:
                continue
            for label, variable in VARIABLES.items():
                label = ALIASES.get((name, label), label)
                if (where.split("'")[1], label) in EXEMPT:
                    continue
                if label in defined[name][1] and f'{label}=~"{variable}"' not in matchers:
                    ignored.append(f"{where}: {name} has `{label}` but the query ignores {variable}")
    assert not ignored, "\n".join(ignored)
