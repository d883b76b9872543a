"""Benchmark phases end: a stalled one raises, naming itself and its progress (pure logic)."""

from __future__ import annotations

import threading

import pytest

from bench.scaleout_phases import PhaseStalledError, run_phase


def test_a_phase_returns_its_result() -> None:
    assert run_phase("sum", lambda: 1 + 2, timeout_s=5) == 3


def test_a_phase_raises_its_own_error() -> None:
    def fail() -> None:
        raise ValueError("broken store")

    with pytest.raises(ValueError, match="broken store"):
        run_phase("write", fail, timeout_s=5)


def test_a_stalled_phase_raises_with_its_name_and_progress() -> None:
    never = threading.Event()
    try:
        with pytest.raises(PhaseStalledError, match=r"'posts agent'.*1,234 of 5,000"):
            run_phase(
                "posts agent",
                never.wait,
                timeout_s=0.3,
                progress=lambda: "1,234 of 5,000 events consumed",
                poll_s=0.05,
            )
    finally:
        never.set()  # lets the stuck thread end
