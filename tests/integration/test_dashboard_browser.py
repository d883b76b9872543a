"""The worker's built-in /dashboard, opened in headless Chromium: every panel drawn or explained.

A private Prometheus (own state folder and port, 1 s scrapes) scrapes a real `bitvelocity
worker` subprocess (all agents, a token set) while a short load runs; Chromium then renders
the page, whose panels say how many points they drew (``data-points``). The screenshot is
kept in the test's temporary folder. Panels that only fill after failures or with the
scale-out brokers must show their explanation instead.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cli import run_cli
from tests.local_resources import free_port

#: Panels with data only after errors, quality failures or source DDL, or with NATS running.
ONLY_AFTER_FAILURES = ("Errors", "Quality failures", "Messages to NATS", "Source schema changes")
SECTION = re.compile(
    r'<section class="panel" data-title="([^"]*)" data-points="(\d+)">(.*?)</section>'
)


@pytest.fixture
def monitored_worker(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(dashboard URL, token, environment) of a worker scraped by a private Prometheus."""
    token = secrets.token_urlsafe(16)
    metrics_port = free_port()
    env = {
        "BV_WEB__TOKEN": token,
        "BV_WEB__PORT": str(free_port()),
        "BV_WEB__METRICS_PORT": str(metrics_port),
        "BV_MONITORING__PROMETHEUS_PORT": str(free_port()),
        "BV_MONITORING__SCRAPE_INTERVAL_S": "1",
    }
    prometheus = {**env, "BV_STACK__STATE_DIR": str(tmp_path / "state")}
    # The panels fill from CDC: the OLTP schema, the warehouse and the connector must exist,
    # whichever test ran before (both commands are idempotent).
    for command in (("migrate",), ("connector", "register")):
        prepared = run_cli(*command)
        assert prepared.returncode == 0, prepared.stderr
    up = run_cli("stack", "up", "prometheus", "--with-monitoring", "--quiet", env=prometheus)
    assert up.returncode == 0, up.stderr
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{metrics_port}/dashboard", token, prometheus
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        log.close()
        run_cli("stack", "down", "prometheus", env=prometheus)


def panels(page: str) -> dict[str, tuple[int, str]]:
    return {title: (int(points), body) for title, points, body in SECTION.findall(page)}


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed (apt-get install chromium; ./bv test does it)"
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


@pytest.mark.timeout(400)
def test_dashboard_in_chromium_draws_every_panel_from_prometheus(
    monitored_worker: tuple[str, str, dict[str, str]], tmp_path: Path
) -> None:
    url, token, prometheus = monitored_worker
    auth = {"Authorization": f"Bearer {token}"}
    load = run_cli("loadgen", "--transactions", "60", "--rate", "30", "--days-back", "30")
    assert load.returncode == 0, load.stderr
    # Every panel that a load fills has points once Prometheus scraped a few times. A second,
    # later load gives the rate() panels a second increase if the first one fell between
    # scrapes on a busy machine (one CI run saw a panel still empty after 120 s).
    started = time.monotonic()
    deadline = started + 180
    reloaded = False
    missing: list[str] = ["(not asked yet)"]
    while missing and time.monotonic() < deadline:
        if not reloaded and time.monotonic() - started > 60:
            reloaded = True
            again = run_cli("loadgen", "--transactions", "60", "--rate", "30", "--days-back", "30")
            assert again.returncode == 0, again.stderr
        answer = httpx.get(url, headers=auth, timeout=30)
        if answer.status_code == 200:
            found = panels(answer.text)
            missing = [
                t for t, (n, _) in found.items() if n == 0 and not t.startswith(ONLY_AFTER_FAILURES)
            ] or ([] if found else ["(no panels)"])
        if missing:
            time.sleep(2)
    assert missing == [], f"panels without points after 180 s: {missing}"

    # The same page in a real browser: the DOM Chromium built, then a screenshot.
    page_url = f"{url}?token={token}"
    dom = chromium("--dump-dom", page_url, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    seen = panels(dom.stdout)
    assert len(seen) >= 12
    for title, (points, body) in seen.items():
        if title.startswith(ONLY_AFTER_FAILURES) and points == 0:
            assert 'class="empty"' in body, title  # explained, never blank
        else:
            assert points > 0, title
            assert "<polyline" in body or "<circle" in body, title
    shot = tmp_path / "dashboard.png"
    taken = chromium(
        "--window-size=1280,2200", f"--screenshot={shot}", page_url, profile=tmp_path / "profile"
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.stat().st_size > 20_000

    # No token, or a wrong one: refused.
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(f"{url}?token=wrong", timeout=10).status_code == 401

    # Prometheus down: every panel says so, the page still renders.
    assert run_cli("stack", "down", "prometheus", env=prometheus).returncode == 0
    down = httpx.get(url, headers=auth, timeout=30)
    assert down.status_code == 200
    assert down.text.count("is unreachable") == len(seen)
