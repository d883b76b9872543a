"""No configured secret is in the repository or in the stack's logs.

The needles are the passwords ``stack up`` generated (read from the credentials file like any
process does). The demo test scans its own run's output the same way
(``test_demo_and_cli.py``). Each test fails when a password is committed or logged.
"""

from __future__ import annotations

import re
import subprocess

from config.settings import PROJECT_ROOT, Settings
from security.secret_scan import configured_secrets, log_files, secrets_in_files, tracked_files


def test_the_stack_generated_every_password(settings: Settings) -> None:
    assert set(configured_secrets(settings)) >= {
        "BV_POSTGRES__ADMIN_PASSWORD",
        "BV_POSTGRES__DEBEZIUM_PASSWORD",
        "BV_POSTGRES__WORKER_PASSWORD",
        "BV_REDIS__PASSWORD",
        "BV_REDIS__ADMIN_PASSWORD",
    }


def test_no_configured_secret_is_in_a_file_git_would_commit(settings: Settings) -> None:
    files = tracked_files(PROJECT_ROOT)
    assert len(files) > 100  # the listing worked
    assert secrets_in_files(files, configured_secrets(settings)) == {}


def test_no_private_key_is_in_a_file_git_would_commit() -> None:
    marker = "-----BEGIN " + "PRIVATE KEY-----"  # split so this file does not match itself
    pattern = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    leaks = [
        str(path)
        for path in tracked_files(PROJECT_ROOT)
        if path.is_file() and pattern.search(path.read_bytes().decode("utf-8", "replace"))
    ]
    assert leaks == [], f"private keys ({marker}) committed: {leaks}"


def test_the_credentials_file_is_ignored_by_git(settings: Settings) -> None:
    credentials = settings.credentials_file
    if not credentials.resolve().is_relative_to(PROJECT_ROOT):
        return  # a state folder outside the repository cannot be committed
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(credentials)], cwd=PROJECT_ROOT, check=False
    )
    assert ignored.returncode == 0, f"{credentials} is not git-ignored"


def test_no_configured_secret_is_in_the_stack_logs(settings: Settings) -> None:
    logs = log_files(settings.stack.state_dir)
    assert logs, "the stack writes logs under its state folder"
    assert secrets_in_files(logs, configured_secrets(settings)) == {}
