"""Request counters and latency histograms in the Prometheus text format (no dependency)."""

from __future__ import annotations

import threading
from collections.abc import Callable

# Latency buckets in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = {}
        # route -> (bucket counts, sum, count)
        self._latency: dict[tuple[str, str], tuple[list[int], float, int]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            lkey = (method, route)
            buckets, total, count = self._latency.get(lkey, ([0] * len(BUCKETS), 0.0, 0))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._latency[lkey] = (buckets, total + seconds, count + 1)

    def render(self, gauges: Callable[[], dict[str, tuple[str, float]]]) -> str:
        lines = [
            "# HELP lookalike_requests_total HTTP requests by method, route and status.",
            "# TYPE lookalike_requests_total counter",
        ]
        with self._lock:
            counts = sorted(self._counts.items())
            latency = sorted((k, (list(b), s, c)) for k, (b, s, c) in self._latency.items())
        for (method, route, status), n in counts:
            lines.append(
                f'lookalike_requests_total{{method="{method}",route="{_label(route)}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP lookalike_request_duration_seconds HTTP request latency.",
            "# TYPE lookalike_request_duration_seconds histogram",
        ]
        for (method, route), (buckets, total, count) in latency:
            labels = f'method="{method}",route="{_label(route)}"'
            for bound, n in zip(BUCKETS, buckets, strict=True):
                lines.append(
                    f'lookalike_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} {n}'
                )
            lines.append(f'lookalike_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
            lines.append(f"lookalike_request_duration_seconds_sum{{{labels}}} {total:.6f}")
            lines.append(f"lookalike_request_duration_seconds_count{{{labels}}} {count}")
        for name, (help_text, value) in gauges().items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
