"""Pipeline health for ``bitvelocity status``, read from the workers' ``/metrics``.

Two scrapes ``interval`` seconds apart give throughput and recent errors as differences of
counters; lag, freshness and DLQ totals come from the second scrape. The summary is pure
(``summarize``) so it is tested on hand-written exposition text.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from config.errors import TransientError

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


class WorkerUnreachableError(TransientError):
    """A worker's /metrics did not answer."""


@dataclass(frozen=True)
class PipelineHealth:
    pipeline: str
    records_total: float
    records_per_s: float
    freshness_s: float | None
    recent_errors: dict[str, float] = field(default_factory=dict)
    #: Records not processed yet over the pipeline's partitions (None: not published).
    lag_records: float | None = None


@dataclass(frozen=True)
class HealthReport:
    pipelines: list[PipelineHealth]
    lag_by_topic: dict[str, float]
    dlq_by_topic: dict[str, float]


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition text, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str, *, token: SecretStr | None = None, timeout_s: float = 5.0) -> Samples:
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise WorkerUnreachableError(f"{url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise WorkerUnreachableError(f"{url}: HTTP {response.status_code} (token?)")
    return parse_samples(response.text)


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            totals[dict(labels).get(label, "")] += value
    return dict(totals)


def summarize(before: Samples, after: Samples, seconds: float) -> HealthReport:
    """Per-pipeline health from two scrapes ``seconds`` apart (counters may have reset)."""
    records_now = _by(after, "bv_data_records_processed_total", "pipeline")
    records_then = _by(before, "bv_data_records_processed_total", "pipeline")
    freshness = _by(after, "bv_event_freshness_seconds", "pipeline")
    lags = _by(after, "bv_pipeline_lag_records", "pipeline")
    errors: dict[str, dict[str, float]] = defaultdict(dict)
    for (name, labels), value in after.items():
        if name == "bv_data_processing_errors_total":
            label = dict(labels)
            delta = value - before.get((name, labels), 0.0)
            if delta < 0:  # the worker restarted between scrapes
                delta = value
            if delta:
                errors[label["pipeline"]][label["error_type"]] = delta
    pipelines = sorted(set(records_now) | set(freshness) | set(errors) | set(lags))
    report = []
    for pipeline in pipelines:
        now = records_now.get(pipeline, 0.0)
        delta = now - records_then.get(pipeline, 0.0)
        rate = (delta if delta >= 0 else now) / seconds if seconds > 0 else 0.0
        fresh = freshness.get(pipeline)
        report.append(
            PipelineHealth(
                pipeline=pipeline,
                records_total=now,
                records_per_s=rate,
                freshness_s=None if fresh is None or fresh != fresh else fresh,  # NaN: none yet
                recent_errors=errors.get(pipeline, {}),
                lag_records=lags.get(pipeline),
            )
        )
    return HealthReport(
        pipelines=report,
        lag_by_topic=_by(after, "bv_consumer_lag_records", "topic"),
        dlq_by_topic=_by(after, "bv_dlq_records_total", "topic"),
    )


def merge(samples: list[Samples]) -> Samples:
    """Several workers' samples as one: counters and lag add up; freshness takes the worst."""
    merged: dict[tuple[str, Labels], float] = {}
    for one in samples:
        for key, value in one.items():
            if key not in merged:
                merged[key] = value
            elif key[0] == "bv_event_freshness_seconds":
                merged[key] = max(merged[key], value)
            else:
                merged[key] += value
    return merged


def late_events_total(samples: Samples) -> float:
    """``bv_late_events_total`` summed over the workers (published, republished included)."""
    return sum(v for (name, _), v in samples.items() if name == "bv_late_events_total")


@dataclass(frozen=True)
class Measurement:
    """Two scrapes ``seconds`` apart of the workers that answered both times."""

    workers: list[str]
    report: HealthReport
    late_events: float
    skipped: list[str]


def measure(urls: list[str], token: SecretStr | None, interval_s: float) -> Measurement:
    """Scrape every worker twice, ``interval_s`` apart, and summarize (rates need two).

    A worker that does not answer is skipped (named in ``skipped``); none answering is a
    ``TransientError`` naming the addresses.
    """
    skipped: list[str] = []
    first = _scrape_all(urls, token, skipped)
    if not first:
        raise TransientError(
            f"no worker answered at {', '.join(urls)}; is a worker running "
            "(`bitvelocity worker`)? Use --target host:port for others"
        )
    started = time.monotonic()
    time.sleep(interval_s)
    second = _scrape_all(list(first), token, skipped)
    latest = merge(list(second.values()))
    report = summarize(merge(list(first.values())), latest, time.monotonic() - started)
    return Measurement(list(second), report, late_events_total(latest), skipped)


def _scrape_all(urls: list[str], token: SecretStr | None, skipped: list[str]) -> dict[str, Samples]:
    found = {}
    for url in urls:
        try:
            found[url] = scrape(url, token=token)
        except WorkerUnreachableError as exc:
            skipped.append(str(exc))
    return found
