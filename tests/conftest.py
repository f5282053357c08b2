"""Shared fixtures: real mosquitto and influxd for the session, unique names per test.

Hypothesis runs derandomized (the same examples every run, no example database), so a
property test cannot fail on one run and pass on the next. To hunt for new
counterexamples, run with ``--hypothesis-profile=explore``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings

from contract import TopicScheme

settings.register_profile("suite", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile("suite")


@pytest.fixture(scope="session")
def services() -> Iterator[object]:
    """mosquitto and influxd started once for the test session (never skipped).

    A missing binary fails the tests that need it with the package to install.
    """
    from gateway.localstack.services import LocalServices

    with LocalServices() as local:
        yield local.endpoints


@pytest.fixture
def unique() -> str:
    """A short unique token for topic prefixes, databases and client ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topics(unique: str) -> TopicScheme:
    """A topic scheme under a prefix no other test uses."""
    return TopicScheme(prefix=f"sgtest/{unique}")


# Files that take a minute or more: `make test` runs two xdist workers with a file each
# (--dist loadfile), which hand out files in collection order, so these go first and
# the short ones fill in around them instead of one long file running alone at the end.
_LONG_FIRST = (
    "tests/integration/test_up_demo.py",
    "tests/integration/test_influx_outage.py",
    "tests/integration/test_gateway_process.py",
    "tests/integration/test_up.py",
    "tests/integration/test_cluster_netns.py",
    "tests/gateway/test_bench_integration.py",
    "tests/integration/test_alarms_e2e.py",
    "tests/edge/test_edge_integration.py",
    "tests/gateway/test_evaluate_nab.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the long files first (a stable sort: the order inside a file is kept)."""
    rank = {path: i for i, path in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
