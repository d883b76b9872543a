"""Integration tests run against the real local stack; they fail (not skip) without it.

Skipping would let a suite that tested nothing look green. Start the stack with
`bitvelocity stack up`, or run everything with `./bv test`, which starts and stops it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import Settings
from stack.manager import Stack
from tests.leftovers import snapshot_objects, wait_for_no_leftovers


@pytest.fixture(scope="session", autouse=True)
def stack_is_ready(settings: Settings) -> None:
    rows = Stack(settings).status()
    missing = [f"{row.name} ({row.state})" for row in rows if not row.ready]
    if missing:
        pytest.fail(
            "the local stack is not ready: "
            + ", ".join(missing)
            + "; run `bitvelocity stack up` (or `./bv test`, which starts it)",
            pytrace=False,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path) or "/faults/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def no_leftovers(settings: Settings) -> Iterator[None]:
    """The module's tests leave no topic, subject, connector, slot or database behind.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("no_leftovers")``: the
    snapshot is taken before their first test, compared after their last, also when a test
    failed (the cleanup must work then too). Objects another module's session fixtures
    create in between would show up, so only self-contained modules opt in.
    """
    before = snapshot_objects(settings)
    yield
    added = wait_for_no_leftovers(settings, before)
    if added:
        pytest.fail(f"the module left behind {added}", pytrace=False)
