"""Setup and teardown of a self-hosted pair, shared by the wizard and the CLI.

Both run as enginejob *job processes* (``start_deploy``, ``start_teardown``): the credentials reach the
job through a pipe, the job holds the prefix's lock (one job per prefix and account across every wizard
and CLI on this machine), and when the wizard or CLI that started it dies, whatever the signal, the job
rolls back and exits, taking the engine and its provider processes with it. ``setup`` is what runs in
the job process: it runs the ``SelfHostedPair`` program inline through the Automation API, streams the
engine's events as ``Step``s, and on any failure rolls back (``destroy``, then a sweep by name) so
nothing is left half-made.

Check again at the moment of acting: ``setup`` reads the account again under the prefix's lock (the
plan the user confirmed may be minutes old, and another tab or terminal may have deployed the prefix
since); apps of the prefix that exist without this deploy's state are never taken over
(``AlreadyExists``).

Where credentials go, and where they don't:
- the Fly token reaches the Pulumi CLI and its provider processes only as ``FLY_API_TOKEN`` in their
  environment: it is no input of any resource, so the state never holds it, not even encrypted;
- the channel and Anthropic credentials are Pulumi secrets, encrypted in the state with a passphrase
  made per job and kept in memory (the passphrase provider);
- the backend is a directory of the job, removed when the job ends (or the user's own backend,
  ``backend_url``, with the user's ``PULUMI_CONFIG_PASSPHRASE``); the program, work dir, Pulumi home
  and the CLI's temp files live in the job's directory too, removed at the end (or, for a job killed
  outright, by the next start's sweep).

``teardown`` needs no state: it removes the agent VM (machines, volumes, app), then the relay, by name
in the user's org, through the Machines API; an app already gone is not an error.
"""

from __future__ import annotations

import contextlib
import os
import secrets as pysecrets
import shutil
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi import automation as auto
from pydantic import SecretStr

import enginejob
from enginejob.backend_lock import LockUnavailable, WaitStopped, stack_lock
from fly.errors import FlyAuthError, FlyError, FlyNotFound

from .account import Account, AccountError, AlreadyExists, check_account, connect, refuse_existing
from .component import MARKER, SelfHostedPair, flycast_url
from .progress import Progress, Redactor, Step, engine_step
from .settings import Credentials, DeploySettings
from .target import Target

if TYPE_CHECKING:
    from enginejob import JobContext

REPO = Path(__file__).resolve().parent.parent
PROJECT = "selfhosted"


class EngineMissing(RuntimeError):
    pass


PrefixBusy = enginejob.Busy  # another job (of any process on this machine) holds the prefix


def prefix_key(target: Target, prefix: str) -> str:
    """The lock of one prefix on one account, shared by the wizard and every CLI on this machine."""
    return f"selfhosted/{target.account_key}/{prefix}"


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
    # Why it failed, for callers that answer differently: "already_exists" (apps of the prefix exist
    # without this deploy's state: tear them down first), "account", "interrupted", "died", "failed".
    code: str = ""


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
                 passphrase: str | None, progress: Progress, ctx: JobContext) -> None:
        # The job's private directory: enginejob removes it however the job ends.
        self.root = ctx.dir
        os.chmod(self.root, 0o700)
        self.redact = Redactor(credentials.values())
        self._progress = progress
        for sub in ("work", "home", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        own_backend = self.own_backend = backend_url is None
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
            **ctx.env,  # the job's marker: its end and a sweep find every process
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
        # The job's directory is enginejob's to remove; what the engine left in it goes now.
        for sub in ("backend", "work", "home", "tmp"):
            shutil.rmtree(self.root / sub, ignore_errors=True)


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
          backend_url: str | None = None, passphrase: str | None = None, health_timeout: int = 120,
          ctx: JobContext) -> SetupResult:
    """Deploy (or update) the pair; on failure roll back what this deploy made.

    Runs in a job process (``ctx``: it holds the prefix's lock, and its cancel stops the engine; see
    ``start_deploy``). The account is read here, at the moment of acting, whatever a plan said before."""
    job = _Job(target, credentials, backend_url, passphrase, progress, ctx)
    try:
        try:
            job.step("checking the Fly token and what exists of the prefix", "running", "account")
            account = check_account(target, credentials.token, settings)
            job.step(f"token ok: organization {account.org_name} ({account.org_slug}), can create apps",
                     "done", "account")
            if backend_url is None:  # no state of an earlier deploy: its apps are not ours to take over
                refuse_existing(account, settings)
        except AccountError as exc:
            job.step(str(exc), "failed", "account")
            return SetupResult(ok=False, failure=job.redact(str(exc)),
                               code=exc.code if isinstance(exc, AlreadyExists) else "account")
        if ctx.cancelled.is_set():
            job.step("interrupted before anything was created", "warning", "interrupt")
            return SetupResult(ok=False, failure="interrupted before it started: nothing was created",
                               code="interrupted")
        # What a sweep says this job may have left, if it is killed from here on.
        ctx.note(apps=[a for a in (settings.relay_app, settings.vm_app) if a not in account.existing_apps],
                 target=target.name, org=account.org_slug)
        with contextlib.ExitStack() as held:
            if not job.own_backend:  # the user's backend: other machines (CI, a teammate) may update this stack
                try:
                    held.enter_context(_backend_lock(job, settings, ctx))
                except (enginejob.Busy, LockUnavailable, WaitStopped) as exc:
                    words = "interrupted while waiting for the stack" if isinstance(exc, WaitStopped) else str(exc)
                    job.step(words, "failed", "deploy")
                    return SetupResult(ok=False, failure=job.redact(words), code={
                        enginejob.Busy: "busy", WaitStopped: "interrupted"}.get(type(exc), "failed"))
            return _deploy(job, settings, account, target, credentials, health_timeout, ctx)
    finally:
        job.close()


def _backend_lock(job: _Job, settings: DeploySettings, ctx: JobContext) -> Any:
    """The stack's lock at the user's backend (enginejob.backend_lock), shared with every entry point of the
    project, waited for while saying who holds it; a cancel stops the wait."""
    def waiting(holder: Any) -> None:
        who = holder.sentence() if holder is not None else "another update of this stack is running"
        job.step(f"waiting: {who}", "running", "backend-lock")

    return stack_lock(str(job.backend_url), PROJECT, settings.prefix, title=f"a self-hosted deploy of "
                      f"{settings.prefix!r}", on_wait=waiting, env=job.env,
                      stop=ctx.cancelled.is_set)


def _deploy(job: _Job, settings: DeploySettings, account: Account, target: Target, credentials: Credentials,
            health_timeout: int, ctx: JobContext) -> SetupResult:
    stack = job.stack(settings, program_for(settings, account, target, credentials, health_timeout))
    job.step(f"deploying {settings.relay_app} and {settings.vm_app} to {target.name}", "running", "deploy")
    result, error, interrupted = _up(job, stack, ctx)
    if error is not None or interrupted:
        if interrupted:
            failure, code = "interrupted before it finished", "interrupted"
        elif isinstance(error, auto.CommandError):
            failure, code = _failure_text(job, error), "failed"
        else:
            failure, code = f"{type(error).__name__}: {job.redact(str(error))}", "failed"
        job.step(f"deploy failed: {failure}", "failed", "deploy")
        if account.existing_apps:
            # An update of a pair deployed before (the user's backend): its volume holds the agent's
            # data, so a failed update leaves it as it is rather than destroying it.
            job.step(f"{' and '.join(account.existing_apps)} existed before this deploy: left as they are "
                     "(not rolled back); run the setup again to finish the update", "warning", "rollback")
            return SetupResult(ok=False, failure=failure, left_behind=list(account.existing_apps), code=code)
        left = _rollback(job, stack, target, credentials, settings)
        return SetupResult(ok=False, failure=failure, left_behind=left, code=code)
    assert result is not None
    outputs = {k: v.value for k, v in result.outputs.items() if not v.secret}
    relay_url = str(outputs.get("relay_url", target.public_url(settings.relay_app)))
    job.step(f"healthy: {relay_url}/health answers ok; machine checks passing", "done", "deploy")
    return SetupResult(ok=True, relay_url=relay_url, webhook_url=relay_url + webhook_path(settings.channel),
                       next_step=next_step(settings, relay_url), outputs=outputs)


INTERRUPTED = "interrupted: stopping the deploy, then removing what it made"


def _up(job: _Job, stack: auto.Stack, ctx: JobContext) -> tuple[auto.UpResult | None, BaseException | None, bool]:
    """``up``, waited for even when interrupted, so the rollback never races the engine (its stack lock,
    its last writes to the job's directory). A cancel (the parent's, or the parent's death) sends the
    engine one SIGINT."""
    def up() -> auto.UpResult:
        return stack.up(on_event=job.on_event, color="never", on_output=lambda _line: None)

    finished = threading.Event()

    def announce() -> None:  # said when the cancel comes, not when the engine has stopped
        while not finished.is_set():
            if ctx.cancelled.wait(0.2):
                job.step(INTERRUPTED, "warning", "interrupt")
                return

    threading.Thread(target=announce, name="announce-cancel", daemon=True).start()
    try:
        return ctx.engine(up, stack=stack)
    finally:
        finished.set()


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
                machines = [m for m in client.list_machines(app) if m.state not in ("destroyed", "destroying")]
                strangers = [m.id for m in machines
                             if (m.config.get("metadata") or {}).get(MARKER) != settings.prefix]
                if strangers:  # read now, at the moment of acting: not a machine of this pair
                    step(f"{app} has machines the self-hosted setup did not make ({', '.join(strangers)} carry no "
                         f"{MARKER}={settings.prefix} marker): left alone", "failed", f"teardown:{app}")
                    left.append(app)
                    continue
                step(f"removing {app}", "running", f"teardown:{app}")
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


def run_teardown(target: Target, settings: DeploySettings, token: str, progress: Progress) -> list[str]:
    """Teardown with every text redacted (in a job process that holds the prefix's lock, or in-process)."""
    redact = Redactor([token])

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


# -- the parent's side: jobs started by the wizard and the CLI -----------------------------------------------

def _plain(credentials: Credentials) -> dict[str, Any]:
    """The credentials as the job's payload (it crosses a pipe to the job process, nothing else)."""
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in credentials.model_dump().items()}


def _payload(target: Target, settings: DeploySettings) -> dict[str, Any]:
    return {"target": asdict(target), "settings": settings.model_dump(mode="json")}


def start_deploy(runner: enginejob.Runner, target: Target, settings: DeploySettings, credentials: Credentials,
                 progress: Progress, *, backend_url: str | None = None, passphrase: str | None = None,
                 health_timeout: int = 120) -> enginejob.Job:
    """The deploy as a job process holding the prefix's lock; ``enginejob.Busy`` (at once) when another
    job of any process holds it. ``deploy_outcome(job)`` waits for its result."""
    payload = {**_payload(target, settings), "credentials": _plain(credentials), "backend_url": backend_url,
               "passphrase": passphrase, "health_timeout": health_timeout}
    return runner.start("selfhosted.jobentry:deploy", payload, kind="selfhosted-deploy",
                        title=f"a deploy of {settings.prefix!r}", key=prefix_key(target, settings.prefix),
                        on_event=lambda event: progress(Step(**event)))


def start_teardown(runner: enginejob.Runner, target: Target, settings: DeploySettings, token: str,
                   progress: Progress) -> enginejob.Job:
    payload = {**_payload(target, settings), "token": token}
    return runner.start("selfhosted.jobentry:teardown", payload, kind="selfhosted-teardown",
                        title=f"a teardown of {settings.prefix!r}", key=prefix_key(target, settings.prefix),
                        on_event=lambda event: progress(Step(**event)))


DIED = ("its process was killed before it finished; what it made may still be there: look at the apps of "
        "the prefix, and tear them down")


def deploy_outcome(job: enginejob.Job, timeout: float | None = None,
                   runner: enginejob.Runner | None = None) -> SetupResult:
    """The deploy job's result. A job process killed outright (OOM, a stray kill) left its engine running:
    with ``runner`` those processes and the job's directory are swept at once, not at the next start."""
    try:
        return SetupResult(**job.wait(timeout))
    except enginejob.JobFailed as exc:  # the entry's own words (it keeps secrets out of them)
        return SetupResult(ok=False, failure=str(exc) or "the deploy failed", code="failed")
    except enginejob.JobDied:
        swept = runner.sweep() if runner is not None else []
        # What it noted it may have made (nothing noted: it died before creating anything).
        maybe = next((list(map(str, w.notes.get("apps") or [])) for w in swept if w.id == job.id), [])
        return SetupResult(ok=False, failure=f"the deploy stopped: {DIED}", code="died", left_behind=maybe)


def teardown_outcome(job: enginejob.Job, settings: DeploySettings, timeout: float | None = None,
                     runner: enginejob.Runner | None = None) -> list[str]:
    """The apps still there after the teardown job."""
    try:
        return list(job.wait(timeout)["left_behind"])
    except enginejob.JobFailed:
        return [settings.vm_app, settings.relay_app]
    except enginejob.JobDied:
        if runner is not None:
            runner.sweep()
        return [settings.vm_app, settings.relay_app]
