"""Every Kubernetes API call the product makes is bounded: a connection a network blip broke
can look open and quiet for ever, and a call on it would hang its caller with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CONTROLLER = Path(__file__).resolve().parents[2] / "reel_reconciler"
API_CALL = re.compile(r"^(create|get|list|patch|delete|read|replace)_\w*("
                      r"custom_object|custom_object_status|token_review|"
                      r"subject_access_review|namespace\w*|event\w*)$")


def unbounded_calls(source: str) -> list[int]:
    """Lines of calls to generated API methods without `_request_timeout`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and API_CALL.match(node.func.attr)
                and not any(k.arg == "_request_timeout" for k in node.keywords)):
            found.append(node.lineno)
    return found


def test_the_check_finds_an_unbounded_call() -> None:
    assert unbounded_calls("api.patch_namespaced_custom_object(g, v, n, p, x, body)") == [1]
    assert unbounded_calls("api.create_token_review(body, _request_timeout=5)") == []


def test_every_kubernetes_api_call_has_a_request_timeout() -> None:
    problems = [f"{path.relative_to(CONTROLLER.parent)}:{line}"
                for path in sorted(CONTROLLER.rglob("*.py"))
                for line in unbounded_calls(path.read_text())]
    assert problems == []
