"""The wizard's jobs: a plan forgets its credentials when it expires or has run."""

from __future__ import annotations

import time

import pytest

from selfhosted import jobs
from selfhosted.jobs import Job, Jobs
from selfhosted.settings import parse
from selfhosted.target import flysim_target

from test_selfhosted_settings import GOOD_CREDS


def _job() -> Job:
    settings, credentials = parse({"prefix": "alice"}, GOOD_CREDS)
    return Job("deploy", settings, flysim_target("http://127.0.0.1:1"), credentials=credentials)


def test_an_unstarted_plan_expires_and_forgets_the_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Jobs()
    job = registry.add(_job())
    assert registry.get(job.id) is job
    later = time.monotonic() + jobs.PLAN_TTL_SECONDS + 1
    monkeypatch.setattr(jobs.time, "monotonic", lambda: later)
    assert registry.get(job.id) is None
    assert job.credentials is None


def test_a_job_forgets_the_credentials_when_it_has_run() -> None:
    registry = Jobs()
    job = registry.add(_job())
    seen: list[str] = []

    def work(job: Job) -> jobs.State:
        seen.append(job.credentials.vm_secrets()["ANTHROPIC_API_KEY"])
        raise RuntimeError(f"boom {job.credentials.vm_secrets()['ANTHROPIC_API_KEY']}")

    registry.start(job, work)
    deadline = time.monotonic() + 10
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.state == "failed" and job.credentials is None
    assert seen == [GOOD_CREDS["anthropic_api_key"]]
    assert [s.text for s in job.steps] == ["RuntimeError: boom [secret]"]  # redacted, no traceback
