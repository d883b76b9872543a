"""Record latencies from the sink's commits (pure): every record once, at its batch's
commit; the warm-up figure leaves out only what committed in the first seconds."""

from __future__ import annotations

from bench.sink import latencies_ms


def test_each_record_counts_once_at_its_commit_and_warm_up_is_left_out_only_on_request() -> None:
    stamps = {("t", 0): [0, 100, 200, 9_000], ("t", 1): [50]}
    commits = [
        (1.0, "t", 0, 2),  # offsets 0 and 1 at 1,000 ms
        (1.5, "t", 1, 1),  # offset 0 of partition 1 at 1,500 ms
        (1.5, "t", 0, 2),  # a repeated position adds nothing
        (10.0, "t", 0, 4),  # offsets 2 and 3 at 10,000 ms
    ]
    assert latencies_ms(commits, stamps) == [1000, 900, 1450, 9800, 1000]
    # Commits within 5 s of the first are left out; positions still move past them.
    assert latencies_ms(commits, stamps, skip_s=5.0) == [9800, 1000]
