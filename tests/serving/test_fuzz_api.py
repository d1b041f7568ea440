"""Property-based fuzzing of the running API from its own OpenAPI schema (schemathesis).

The contract (issue 5): bad client input is a 4xx with a JSON body saying what to fix; the
service never answers 500 to client input. Schemathesis generates valid and invalid
requests for every operation in ``/openapi.json`` and sends them over HTTP to a real
``bqx serve`` (admin key, so every route is reachable, on a private copy of the trained
home). A failing example is printed with a reproducible curl command.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .conftest import bqx_server, clean_env, run_bqx

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("BQX_FUZZ_EXAMPLES", "60"))  # per operation


@pytest.fixture(scope="module")
def served(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    import shutil

    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(trained_home, home)
    env = clean_env(BQX_HOME=str(home), BQX_SERVE__MAX_BATCH="20")
    out = run_bqx(env, "keys", "create", "--role", "admin", "--rate", "100000", "--json")
    key = json.loads(out)["key"]
    with bqx_server(env) as base:
        yield {"base": base, "key": key}


def test_no_server_errors(served: dict) -> None:
    """Every operation, EXAMPLES generated requests each (valid and invalid bodies, paths,
    query strings); all failures are collected and reported together."""
    schema = schemathesis.openapi.from_url(f"{served['base']}/openapi.json")
    failures: dict[str, str] = {}
    ops = [r.ok() for r in schema.get_all_operations()]
    labels = [op.label for op in ops]
    for op, mode in itertools.product(ops, GenerationMode):
        # positive: schema-valid requests (bad values the schema cannot express: unknown
        # pairs, closed-market bars, ...); negative: schema-violating ones

        @given(case=op.as_strategy(generation_mode=mode))
        @hyp_settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same examples on every run: CI failures reproduce
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=served["base"],
                headers={"X-API-Key": served["key"]},
                checks=[not_a_server_error],
                timeout=30,
            )

        try:
            fuzz()
        except Unsatisfiable:
            # nothing in this operation's schema can be violated (no body, string path
            # parameters): no negative cases exist
            assert mode is GenerationMode.NEGATIVE, op.label
        except Exception as e:  # schemathesis raises a FailureGroup with a curl repro
            failures[f"{op.label} ({mode.value})"] = str(e)[:3000]
    assert {"POST /v1/predict", "POST /v1/predict/batch", "POST /v1/bars"} <= set(labels)
    # the examples really reached the server (a test that sends nothing cannot fail)
    import httpx

    metrics = httpx.get(f"{served['base']}/metrics").text
    sent = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("bqx_http_requests_total{")
    )
    print(f"fuzz: {len(labels)} operations, {sent:.0f} requests: {sorted(labels)}")
    assert sent >= 5 * len(labels), sent
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
