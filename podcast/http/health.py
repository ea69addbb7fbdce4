"""``GET /api/health``: which settings are present and which auth modes are in use.

Never contains a secret: only presence, names, modes and limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podcast.errors import ConfigurationError
from podcast.settings import Settings


def health_report(settings: Settings) -> tuple[bool, dict[str, Any]]:
    """Whether the app is configured, and a report of each section (a section that cannot
    be used says why, naming the setting)."""
    report: dict[str, Any] = {}
    healthy = True
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "realtime": lambda: _realtime(settings),
        "storage": lambda: _storage(settings),
        "limits": lambda: _limits(settings),
        "jobs": lambda: _jobs(settings),
    }
    for name, read in sections.items():
        try:
            report[name] = {"configured": True, **read()}
        except ConfigurationError as error:
            healthy = False
            report[name] = {"configured": False, "problem": error.message, "setting": error.setting}
    return healthy, {"status": "ok" if healthy else "not_configured", **report}


def _realtime(settings: Settings) -> dict[str, Any]:
    realtime = settings.realtime
    return {
        "endpoint_host": realtime.endpoint.split("://", 1)[1].split("/", 1)[0],
        "deployment": realtime.deployment,
        "auth_mode": realtime.auth_mode,
        "response_timeout_seconds": realtime.response_timeout_seconds,
        "max_retries": realtime.max_retries,
    }


def _storage(settings: Settings) -> dict[str, Any]:
    storage = settings.storage
    return {
        "auth_mode": storage.auth_mode,
        "output_container": storage.output_container,
        "input_container": storage.input_container,
    }


def _jobs(settings: Settings) -> dict[str, Any]:
    jobs = settings.jobs
    return {
        "queue": jobs.queue_name,
        "jobs_container": jobs.jobs_container,
        "sync_max_audio_seconds": jobs.sync_max_audio_seconds,
        "job_time_budget_seconds": jobs.job_time_budget_seconds,
    }


def _limits(settings: Settings) -> dict[str, Any]:
    limits, pipeline, narration = settings.limits, settings.pipeline, settings.narration
    return {
        "max_text_characters": limits.max_text_characters,
        "max_sas_expiry_minutes": limits.max_sas_expiry_minutes,
        "default_voice": limits.default_voice,
        "time_budget_seconds": pipeline.time_budget_seconds,
        "concurrency": narration.concurrency,
        "segment_max_words": narration.segment_max_words,
        "min_fidelity": narration.min_fidelity,
        "fidelity_policy": narration.fidelity_policy,
    }
