"""Setup and teardown of a self-hosted pair, shared by the wizard and the CLI.

``setup`` runs the ``SelfHostedPair`` program inline through the Automation API (the program runs in
this process, so the credentials never leave its memory except towards Fly), streams the engine's
events as ``Step``s, and on any failure rolls back (``destroy``, then a sweep by name) so nothing is
left half-made.

Where credentials go, and where they don't:
- the Fly token reaches the Pulumi CLI and its provider processes only as ``FLY_API_TOKEN`` in their
  environment: it is no input of any resource, so the state never holds it, not even encrypted;
- the channel and Anthropic credentials are Pulumi secrets, encrypted in the state with a passphrase
  made per job and kept in memory (the passphrase provider);
- the backend is a temp directory of the job, removed when the job ends (or the user's own backend,
  ``backend_url``, with the user's ``PULUMI_CONFIG_PASSPHRASE``); the program, work dir, Pulumi home
  and the CLI's temp files live in the job's temp directory too, removed at the end.

``teardown`` needs no state: it removes the agent VM (machines, volumes, app), then the relay, by name
in the user's org, through the Machines API; an app already gone is not an error.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi import automation as auto

from fly.errors import FlyAuthError, FlyError, FlyNotFound

from .account import Account, AccountError, check_account, connect, refuse_existing
from .component import SelfHostedPair, flycast_url
from .progress import Progress, Redactor, Step, engine_step
from .settings import Credentials, DeploySettings
from .target import Target

REPO = Path(__file__).resolve().parent.parent
PROJECT = "selfhosted"


class EngineMissing(RuntimeError):
    pass


class PrefixBusy(RuntimeError):
    """Another job of this process is deploying or tearing down the same prefix."""


class _PrefixLocks:
    """One job per prefix at a time (per target), process-wide."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], str] = {}

    def acquire(self, target: Target, prefix: str, what: str) -> None:
        with self._lock:
            key = (target.flaps_base_url, prefix)
            if key in self._held:
                raise PrefixBusy(f"{self._held[key]} of {prefix!r} is already running; wait for it to finish, "
                                 "then try again (or use another prefix)")
            self._held[key] = what

    def release(self, target: Target, prefix: str) -> None:
        with self._lock:
            self._held.pop((target.flaps_base_url, prefix), None)

    def busy(self, target: Target, prefix: str) -> str | None:
        with self._lock:
            return self._held.get((target.flaps_base_url, prefix))


LOCKS = _PrefixLocks()


def pulumi_bin() -> Path:
    candidates = [os.environ.get("ARTIFACT_PULUMI_BIN", "")]
    found = shutil.which("pulumi")
    if found:
        candidates.append(str(Path(found).parent))
    for directory in candidates:
        if directory and (Path(directory) / "pulumi").is_file():
            return Path(directory)
    raise EngineMissing("the Pulumi engine is missing: run `source scripts/setup.sh` first (it builds it)")


@dataclass
class SetupResult:
    ok: bool
    relay_url: str = ""
    webhook_url: str = ""
    next_step: str = ""
    failure: str = ""
    left_behind: list[str] = field(default_factory=list)  # apps still there after a failed setup
    outputs: dict[str, Any] = field(default_factory=dict)


def webhook_path(channel: str) -> str:
    return {"whatsapp": "/webhooks/twilio", "discord": "/webhooks/discord", "telegram": "/webhooks/telegram"}[channel]


def next_step(settings: DeploySettings, relay_url: str) -> str:
    url = relay_url + webhook_path(settings.channel)
    if settings.channel == "whatsapp":
        return (f"In the Twilio console, open your WhatsApp sender (or the WhatsApp sandbox settings) and set "
                f"“When a message comes in” to {url} (HTTP POST). Then send it a WhatsApp message.")
    if settings.channel == "discord":
        return (f"In the Discord Developer Portal, open your application and set “Interactions Endpoint URL” to "
                f"{url}. Then invite the bot to your server.")
    return (f"Point your Telegram bot at the relay: open https://api.telegram.org/bot<your bot token>/setWebhook?url="
            f"{url} (with your bot token in place of <your bot token>). Then message your bot.")


class _Job:
    """A job's temp directory, engine environment and redaction: the only place credentials are handled."""

    def __init__(self, target: Target, credentials: Credentials, backend_url: str | None,
                 passphrase: str | None, progress: Progress) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="selfhosted-job-"))
        os.chmod(self.root, 0o700)
        self.redact = Redactor(credentials.values())
        self._progress = progress
        for sub in ("work", "home", "tmp"):
            (self.root / sub).mkdir()
        own_backend = backend_url is None
        if own_backend:
            (self.root / "backend").mkdir()
            backend_url = f"file://{self.root / 'backend'}"
        self.passphrase = passphrase if not own_backend and passphrase else pysecrets.token_urlsafe(32)
        bin_dir = pulumi_bin()
        self.env = {
            # The provider processes run on this interpreter (its virtualenv has the SDK and the project's deps).
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            # The provider processes import fly.providers and selfhosted.health from the checkout.
            "PYTHONPATH": str(REPO),
            "PULUMI_BACKEND_URL": backend_url,
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": os.environ.get("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK",
                                                                       "true"),
            "PULUMI_HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "FLY_API_TOKEN": credentials.token,
        }
        self.backend_url = backend_url
        self.target = target

    def step(self, text: str, status: Any = "info", key: str = "") -> None:
        self._progress(Step(self.redact(text), status, key))

    phase = "up"  # "destroy" while rolling back: its lines follow the deploy's instead of replacing them

    def on_event(self, event: Any) -> None:
        step = engine_step(event)
        if step is not None:
            key = f"{self.phase}:{step.key}" if step.key else ""
            self._progress(Step(self.redact(step.text), step.status, key, step.at))

    def stack(self, settings: DeploySettings, program: Any) -> auto.Stack:
        opts = auto.LocalWorkspaceOptions(
            work_dir=str(self.root / "work"), pulumi_home=str(self.root / "home"), env_vars=self.env,
            secrets_provider="passphrase",
            project_settings=auto.ProjectSettings(name=PROJECT, runtime="python",
                                                  backend=auto.ProjectBackend(url=self.backend_url)))
        return auto.create_or_select_stack(stack_name=settings.prefix, project_name=PROJECT, program=program,
                                           opts=opts)

    def close(self) -> None:
        self.passphrase = ""
        self.env.clear()
        # The engine has exited by now (the up waits for it even when interrupted), so nothing writes here.
        shutil.rmtree(self.root, ignore_errors=True)


def program_for(settings: DeploySettings, account: Account, target: Target, credentials: Credentials,
                health_timeout: int) -> Any:
    def program() -> None:
        pair = SelfHostedPair("pair", settings=settings, org_slug=account.org_slug, target=target,
                              relay_secrets=credentials.relay_secrets(), vm_secrets=credentials.vm_secrets(),
                              relay_extra_env={"TWILIO_WHATSAPP_NUMBER": credentials.twilio_whatsapp_number}
                              if settings.channel == "whatsapp" and credentials.twilio_whatsapp_number else None,
                              health_timeout=health_timeout)
        pulumi.export("relay_url", pair.relay_url)
        pulumi.export("relay_app", pair.relay_app.name)
        pulumi.export("vm_app", pair.vm_app.name)
        pulumi.export("relay_flycast", flycast_url(settings.relay_app))
        pulumi.export("vm_flycast", flycast_url(settings.vm_app))
        pulumi.export("public_ips", pulumi.Output.all(*[ip.address for ip in pair.relay_ips[:2]]))
        pulumi.export("volume_id", pair.vm_volume.volume_id)
        pulumi.export("machines", pulumi.Output.all(pair.relay_machine.machine_id, pair.vm_machine.machine_id))
        pulumi.export("checks", pair.health.checks)
        pulumi.export("probe", pair.health.probe_result)
        # Names, never values: the secrets' names are what the user may want to check in Fly.
        pulumi.export("secret_names", {"relay": sorted(credentials.relay_secrets()), "vm": ["ANTHROPIC_API_KEY"]})
    return program


def setup(target: Target, settings: DeploySettings, credentials: Credentials, progress: Progress, *,
          account: Account | None = None, backend_url: str | None = None, passphrase: str | None = None,
          health_timeout: int = 120, locked: bool = False) -> SetupResult:
    """Deploy (or update) the pair; on failure roll back so nothing of the prefix is left.
    ``locked``: the caller already holds the prefix's lock (and releases it)."""
    if not locked:
        LOCKS.acquire(target, settings.prefix, "a deploy")
    job: _Job | None = None
    try:
        job = _Job(target, credentials, backend_url, passphrase, progress)
        try:
            if account is None:
                job.step("checking the Fly token", "running", "account")
                account = check_account(target, credentials.token, settings)
                job.step(f"token ok: organization {account.org_name} ({account.org_slug}), can create apps",
                         "done", "account")
            if backend_url is None:  # no state of an earlier deploy: its apps are not ours to take over
                refuse_existing(account, settings)
        except AccountError as exc:
            job.step(str(exc), "failed", "account")
            return SetupResult(ok=False, failure=job.redact(str(exc)))
        stack = job.stack(settings, program_for(settings, account, target, credentials, health_timeout))
        job.step(f"deploying {settings.relay_app} and {settings.vm_app} to {target.name}", "running", "deploy")
        result, error, interrupted = _up(job, stack)
        if error is not None or interrupted:
            if interrupted:
                failure = "interrupted before it finished"
            elif isinstance(error, auto.CommandError):
                failure = _failure_text(job, error)
            else:
                failure = f"{type(error).__name__}: {job.redact(str(error))}"
            job.step(f"deploy failed: {failure}", "failed", "deploy")
            left = _rollback(job, stack, target, credentials, settings)
            return SetupResult(ok=False, failure=failure, left_behind=left)
        assert result is not None
        outputs = {k: v.value for k, v in result.outputs.items() if not v.secret}
        relay_url = str(outputs.get("relay_url", target.public_url(settings.relay_app)))
        job.step(f"healthy: {relay_url}/health answers ok; machine checks passing", "done", "deploy")
        return SetupResult(ok=True, relay_url=relay_url, webhook_url=relay_url + webhook_path(settings.channel),
                           next_step=next_step(settings, relay_url), outputs=outputs)
    finally:
        if job is not None:
            job.close()
        if not locked:
            LOCKS.release(target, settings.prefix)


def _up(job: _Job, stack: auto.Stack) -> tuple[auto.UpResult | None, BaseException | None, bool]:
    """``up`` on a thread of its own, so an interrupt (Ctrl-C, or SIGTERM through the CLI) reaches this
    thread while the engine, in the same process group, cancels gracefully; the caller then rolls back."""
    box: dict[str, Any] = {}
    # Not Thread.join: on Python 3.11 and 3.12 a join cut short by KeyboardInterrupt marks the thread
    # stopped while it still runs, and the rollback would then race the engine (its stack lock, its last
    # writes to the job's directory). An Event's wait, interrupted, leaves the event as it was.
    finished = threading.Event()

    def run() -> None:
        try:
            box["result"] = stack.up(on_event=job.on_event, color="never", on_output=lambda _line: None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name="pulumi-up", daemon=True).start()
    interrupted = False
    while not finished.is_set():
        try:
            finished.wait()
        except KeyboardInterrupt:
            if not interrupted:
                job.step("interrupted: stopping the deploy, then removing what it made", "warning", "interrupt")
            interrupted = True
    return box.get("result"), box.get("error"), interrupted


def _failure_text(job: _Job, exc: auto.CommandError) -> str:
    """The provider's own words for what failed (e.g. which check), from the CLI's error output."""
    lines = [line.strip() for line in str(exc).splitlines()]
    picked = []
    for line in lines:
        if "Exception calling application:" in line:
            picked.append(line.split("Exception calling application:", 1)[1].strip())
        elif line.startswith("error:") and "update failed" not in line and "Exception" not in line:
            picked.append(line.removeprefix("error:").strip())
    text = "; ".join(dict.fromkeys(p for p in picked if p)) or "the deploy failed (see the progress above)"
    return job.redact(text)[:2000]


def _rollback(job: _Job, stack: auto.Stack, target: Target, credentials: Credentials,
              settings: DeploySettings) -> list[str]:
    job.step("rolling back: removing what this deploy created", "running", "rollback")
    job.phase = "destroy"
    try:
        stack.destroy(on_event=job.on_event, color="never", on_output=lambda _line: None)
    except auto.CommandError as exc:
        job.step(f"rollback through Pulumi failed ({_failure_text(job, exc)}); removing by name", "warning",
                 "rollback")
    left = teardown(target, settings, credentials.token, job.step)
    if left:
        job.step(f"still there after the rollback: {', '.join(left)}; run teardown", "failed", "rollback")
    else:
        job.step(f"rolled back: no app of {settings.prefix!r} is left", "done", "rollback")
    return left


def teardown(target: Target, settings: DeploySettings, token: str, step: Any,
             org_slug: str | None = None) -> list[str]:
    """Remove the agent VM, then the relay. Returns the apps still there (empty on success)."""
    org = org_slug or settings.org
    left: list[str] = []
    gone: list[str] = []
    with connect(target, token) as client:
        for app in (settings.vm_app, settings.relay_app):
            try:
                found = client.find_app(app)
                if found is None:
                    step(f"{app}: already gone", "done", f"teardown:{app}")
                    gone.append(app)
                    continue
                if found.organization is not None and found.organization.slug not in (org, None):
                    step(f"{app} belongs to organization {found.organization.slug!r}, not {org!r}: left alone",
                         "failed", f"teardown:{app}")
                    left.append(app)
                    continue
                step(f"removing {app}", "running", f"teardown:{app}")
                machines = [m for m in client.list_machines(app) if m.state not in ("destroyed", "destroying")]
                for machine in machines:
                    client.delete_machine(app, machine.id, force=True)
                for machine in machines:
                    if client.find_machine(app, machine.id) is not None:
                        client.wait_machine(app, machine.id, "destroyed", timeout=120)
                for volume in client.list_volumes(app):
                    if volume.state not in ("destroyed", "destroying", "pending_destroy"):
                        client.delete_volume(app, volume.id)
                client.delete_app(app)
                gone.append(app)
                step(f"{app}: removed ({len(machines)} machine(s))", "done", f"teardown:{app}")
            except FlyNotFound:
                step(f"{app}: already gone", "done", f"teardown:{app}")
            except FlyAuthError:
                step(f"{target.name} refused the token (unauthorized): paste the whole token of the org that has "
                     f"{app}", "failed", "teardown")
                return [a for a in (settings.vm_app, settings.relay_app) if a not in gone]
            except FlyError as exc:
                step(f"{app}: could not remove it ({exc})", "failed", f"teardown:{app}")
                left.append(app)
    return left


def run_teardown(target: Target, settings: DeploySettings, token: str, progress: Progress, *,
                 locked: bool = False) -> list[str]:
    """Teardown as a job of its own: one per prefix at a time, every text redacted."""
    if not locked:
        LOCKS.acquire(target, settings.prefix, "a teardown")
    redact = Redactor([token])
    try:
        def step(text: str, status: Any = "info", key: str = "") -> None:
            progress(Step(redact(text), status, key))

        try:
            left = teardown(target, settings, token, step)
        except FlyError as exc:  # e.g. the token refused
            step(f"teardown failed: {exc}", "failed", "teardown")
            return [settings.vm_app, settings.relay_app]
        if not left:
            step(f"nothing of {settings.prefix!r} is left on {target.name}", "done", "teardown")
        return left
    finally:
        if not locked:
            LOCKS.release(target, settings.prefix)

