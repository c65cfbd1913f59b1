"""Reading the observe endpoints: /metrics as samples, /readyz and /healthz statuses."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from .waiting import HANG_GUARD


def samples(text: str | bytes) -> dict[str, float]:
    """Every sample of a Prometheus exposition as ``name{label="v",...}`` -> value."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; status 0 if nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=HANG_GUARD) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def scrape(port: int) -> dict[str, float] | None:
    """The samples of /metrics on ``port``; None if it does not answer 200 (yet)."""
    status, body = http_get(port, "/metrics")
    return samples(body) if status == 200 else None


def scraped(port: int, name: str) -> float | None:
    """One sample of /metrics, or None if /metrics is not up or lacks it."""
    return (scrape(port) or {}).get(name)
