"""The deploy wizard: one server-rendered, mobile-first page flow on Starlette (no front-end build).

form (GET /) -> token check and plan (POST /plan) -> deploy (POST /jobs/{id}/deploy) -> live progress
(GET /jobs/{id}, its steps streamed from GET /jobs/{id}/events as Server-Sent Events) -> result with
the relay's URL and the webhook's next step -> teardown (POST /teardown).

Credentials arrive in a POST body, live in the planned job's memory until its job process starts (they
cross to it through a pipe), and are never rendered back: the form's secret fields are always empty, and
every step text is redacted.

Deploys and teardowns run as enginejob job processes (see ``runner.start_deploy``): one per prefix across
this wizard and every CLI on the machine, and none outlives the wizard holding a secret (a killed wizard's
jobs roll back by themselves). On SIGTERM the wizard stops taking jobs, lets the running ones finish or
roll back, and delivers their outcome to the open pages before it exits (``serve``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

import enginejob
from fly.regions import REGIONS

from .account import AccountError, check_account, refuse_existing
from .jobs import PLAN_TTL_SECONDS, Job, Jobs, State
from .plan import plan
from .runner import deploy_outcome, prefix_key, start_deploy, start_teardown, teardown_outcome
from .settings import CHANNELS, DEFAULT_VM_SIZE, VM_SIZES, SettingsError, parse, parse_settings
from .target import Target

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))
PLAIN_FIELDS = ("prefix", "org", "region", "channel", "vm_size", "volume_size_gb", "twilio_whatsapp_number")
SECRET_FIELDS = ("fly_token", "anthropic_api_key", "twilio_account_sid", "twilio_auth_token", "discord_bot_token",
                 "telegram_bot_token")
DEFAULTS = {"prefix": "", "org": "personal", "region": "ams", "channel": "whatsapp", "vm_size": DEFAULT_VM_SIZE,
            "volume_size_gb": "1", "twilio_whatsapp_number": ""}
# No cache anywhere (pages may show a plan), no referrer, no framing.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff"}


STOPPING = ("The wizard is stopping", "The wizard is stopping and takes no new deploys or teardowns. Start it "
            "again, then try again.")


class Wizard:
    def __init__(self, target: Target, *, health_timeout: int = 120, relay_image: str | None = None,
                 vm_image: str | None = None, runner: enginejob.Runner | None = None) -> None:
        self.target = target
        self.health_timeout = health_timeout
        self.images = {k: v for k, v in (("relay_image", relay_image), ("vm_image", vm_image)) if v}
        self.jobs = Jobs()
        self.runner = runner or enginejob.Runner()
        self.stopping = False
        self.streams = 0  # open event streams (a stopping wizard waits for them to deliver `end`)

    def busy_message(self, exc: enginejob.Busy) -> HTMLResponse:
        """Who holds the prefix, in words; ``job_url``: that job's page when it is this wizard's."""
        job = self.jobs.by_process(exc.holder.job) if exc.holder and exc.holder.job else None
        return self.page("message.html", 409, title="Already running", message=str(exc), back="/",
                         job_url=f"/jobs/{job.id}" if job else None)

    # -- rendering ---------------------------------------------------------------------------------

    def page(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(rehearsal=self.target.rehearsal, **context)
        return HTMLResponse(html, status_code=status_code, headers=HEADERS)

    def form(self, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
             problem: str | None = None, status_code: int = 200) -> HTMLResponse:
        return self.page("form.html", status_code, values={**DEFAULTS, **(values or {})}, errors=errors or {},
                         problem=problem, regions=sorted(REGIONS.items(), key=lambda kv: kv[1]),
                         channels=list(CHANNELS.items()), sizes=list(VM_SIZES))

    def message(self, title: str, message: str, status_code: int, back: str = "/") -> HTMLResponse:
        return self.page("message.html", status_code, title=title, message=message, back=back)

    # -- routes ------------------------------------------------------------------------------------

    async def index(self, _request: Request) -> Response:
        return self.form()

    async def plan(self, request: Request) -> Response:
        form = await request.form()
        raw = {k: str(form.get(k) or "").strip() for k in (*PLAIN_FIELDS, *SECRET_FIELDS)}
        values = {k: raw[k] for k in PLAIN_FIELDS}
        settings_in: dict[str, Any] = {k: raw[k] for k in ("prefix", "org", "region", "channel", "vm_size",
                                                           "volume_size_gb") if raw[k]}
        settings_in.update(self.images)
        credentials_in = {k: raw[k] for k in SECRET_FIELDS} | {"twilio_whatsapp_number": raw["twilio_whatsapp_number"]
                                                               or None}
        try:
            settings, credentials = parse(settings_in, credentials_in)
        except SettingsError as exc:
            return self.form(values, exc.problems, "Please fix the fields marked below.", 422)
        holder = self.runner.holder(prefix_key(self.target, settings.prefix))
        if holder is not None:
            return self.form(values, {}, f"{holder.sentence()}; wait for it to finish, then try again (or use "
                                         "another prefix).", 409)
        try:
            account = await asyncio.to_thread(check_account, self.target, credentials.token, settings)
        except AccountError as exc:
            return self.form(values, {"fly_token": "was not accepted (see above)"}, str(exc), 422)
        try:
            refuse_existing(account, settings)
        except AccountError as exc:
            return self.form(values, {"prefix": "is in use (see above)"}, str(exc), 409)
        job = self.jobs.add(Job("deploy", settings, self.target, credentials=credentials, account=account))
        return self.page("plan.html", job=job, items=plan(settings, account, self.target, credentials),
                         ttl_minutes=PLAN_TTL_SECONDS // 60)

    async def deploy(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None or job.kind != "deploy":
            return self.message("Plan expired", "This plan is no longer here (plans are kept for "
                                f"{PLAN_TTL_SECONDS // 60} minutes, and forgotten when the server restarts). "
                                "Fill in the form again.", 404)
        if job.state != "planned":
            return RedirectResponse(f"/jobs/{job.id}", status_code=303)
        if self.stopping:
            return self.message(*STOPPING, 503)
        credentials = job.credentials
        assert credentials is not None
        try:  # the job process takes the prefix's lock here: a second deploy of it gets its answer at once
            process = start_deploy(self.runner, self.target, job.settings, credentials, job.add,
                                   health_timeout=self.health_timeout)
        except enginejob.Busy as exc:
            return self.busy_message(exc)
        job.process = process
        job.credentials = None  # the job process has them now; the wizard keeps none

        def work(job: Job) -> State:
            job.result = deploy_outcome(process, runner=self.runner)
            return "succeeded" if job.result.ok else "failed"

        self.jobs.start(job, work)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def cancel(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is not None and job.state == "planned":
            job.finish("failed")
        return RedirectResponse("/", status_code=303)

    async def job_page(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return self.message("Not found", "No such job (jobs are forgotten when the server restarts).", 404)
        if job.state == "planned":
            return RedirectResponse("/", status_code=303)
        return self.page("job.html", job=job)

    async def events(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return Response("no such job\n", status_code=404, media_type="text/plain")
        try:
            seen = max(0, int(request.query_params.get("seen", "0")))
        except ValueError:
            seen = 0

        async def stream() -> AsyncIterator[str]:
            nonlocal seen
            self.streams += 1
            try:
                yield "retry: 2000\n\n"
                while True:
                    steps, done = await job.next_steps(seen, 15.0)
                    for step in steps:
                        yield f"event: step\ndata: {json.dumps(step.as_dict())}\n\n"
                    seen += len(steps)
                    if done and not steps:
                        # The finished page itself, so the page shows the outcome without loading it again
                        # (the wizard may be stopping: a reload would find no server).
                        page = self.page("job.html", job=job).body.decode()
                        yield f"event: end\ndata: {json.dumps({'state': job.state, 'page': page})}\n\n"
                        return
                    if not steps:
                        yield ": keep-alive\n\n"
                    if await request.is_disconnected():
                        return
            finally:
                self.streams -= 1

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def teardown_form(self, _request: Request) -> Response:
        return self.page("teardown.html", values={"prefix": "", "org": "personal"}, errors={}, problem=None)

    async def teardown(self, request: Request) -> Response:
        form = await request.form()
        values = {k: str(form.get(k) or "").strip() for k in ("prefix", "org")}
        token = str(form.get("fly_token") or "").strip()
        errors: dict[str, str] = {}
        settings = None
        try:
            settings = parse_settings({"prefix": values["prefix"], "org": values["org"] or "personal"})
        except SettingsError as exc:
            errors.update(exc.problems)
        if not token:
            errors["fly_token"] = "is required (the token is never kept after a job)"
        if form.get("confirm") != "yes":
            errors["confirm"] = "Tick the box to confirm: this removes both apps and the agent's volume."
        if errors or settings is None:
            return self.page("teardown.html", 422, values=values, errors=errors,
                             problem="Please fix the fields marked below.")
        if self.stopping:
            return self.message(*STOPPING, 503)
        job = Job("teardown", settings, self.target)
        try:
            process = start_teardown(self.runner, self.target, settings, token, job.add)
        except enginejob.Busy as exc:
            return self.busy_message(exc)
        job.process = process

        def work(job: Job) -> State:
            job.left_behind = teardown_outcome(process, job.settings, runner=self.runner)
            return "failed" if job.left_behind else "succeeded"

        self.jobs.add(job)
        self.jobs.start(job, work)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def healthz(self, _request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    # -- stopping ----------------------------------------------------------------------------------

    async def drain(self, grace: float, forced: Callable[[], bool], rollback_limit: float = 300.0) -> None:
        """Stop taking jobs; give the running ones ``grace`` seconds to finish, then cancel them (a deploy
        rolls back) and wait for that; then let the open pages receive their `end` event. ``forced`` (a
        second signal) cuts the waiting short: the jobs then roll back by themselves once the wizard is gone,
        without a page to show it."""
        self.stopping = True
        start = time.monotonic()
        while self.jobs.running() and time.monotonic() - start < grace and not forced():
            await asyncio.sleep(0.1)
        for job in self.jobs.running():
            if job.process is not None:
                job.process.cancel()
        start = time.monotonic()
        while self.jobs.running() and time.monotonic() - start < rollback_limit and not forced():
            await asyncio.sleep(0.1)
        start = time.monotonic()
        while self.streams and time.monotonic() - start < 5.0 and not forced():
            await asyncio.sleep(0.05)


def serve(app: Starlette, *, stop_grace: float = 20.0, **config: Any) -> None:
    """Serve the wizard until SIGTERM or SIGINT, then stop as ``Wizard.drain`` says (uvicorn would
    otherwise close the pages' event streams while their jobs still run, and exit mid-deploy)."""
    import uvicorn

    wizard: Wizard = app.state.wizard

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            await wizard.drain(stop_grace, lambda: self.force_exit or len(self._captured_signals) > 1)
            await super().shutdown(sockets)

    Server(uvicorn.Config(app, timeout_graceful_shutdown=2, **config)).run()


def create_app(target: Target, **options: Any) -> Starlette:
    wizard = Wizard(target, **options)
    app = Starlette(routes=[
        Route("/", wizard.index),
        Route("/plan", wizard.plan, methods=["POST"]),
        Route("/jobs/{job_id}/deploy", wizard.deploy, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", wizard.cancel, methods=["POST"]),
        Route("/jobs/{job_id}", wizard.job_page),
        Route("/jobs/{job_id}/events", wizard.events),
        Route("/teardown", wizard.teardown_form),
        Route("/teardown", wizard.teardown, methods=["POST"]),
        Route("/healthz", wizard.healthz),
    ])
    app.state.wizard = wizard
    return app
