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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

import enginejob
from fly.regions import REGIONS

from .account import AccountError, check_account, refuse_existing
from .jobs import PLAN_TTL_SECONDS, Job, Jobs, State
from .plan import plan
from .runner import deploy_outcome, prefix_key, start_deploy, start_teardown, teardown_outcome
from .settings import (CHANNELS, DEFAULT_VM_SIZE, FIELDS, MAX_FORM_BYTES, SECRET_FIELDS, VM_SIZES, SettingsError,
                       parse_form, parse_teardown)
from .target import Target

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))
TEMPLATES.globals["fields"] = FIELDS  # the inputs' maxlength and pattern are the server's own checks
PLAIN_FIELDS = ("prefix", "org", "region", "channel", "vm_size", "volume_size_gb", "twilio_whatsapp_number")
DEFAULTS = {"prefix": "", "org": "personal", "region": "ams", "channel": "whatsapp", "vm_size": DEFAULT_VM_SIZE,
            "volume_size_gb": "1", "twilio_whatsapp_number": ""}
FIX_BELOW = "Please fix the fields marked below."
# No cache anywhere (pages may show a plan), no referrer, no framing.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff"}


STOPPING = ("The wizard is stopping", "The wizard is stopping and takes no new deploys or teardowns. Start it "
            "again, then try again.")


@dataclass(frozen=True)
class Link:
    href: str
    text: str


@dataclass(frozen=True)
class Refusal:
    """Why a form was not taken: words at the top, each field's words beside it, and maybe a way on."""

    problem: str
    errors: dict[str, str]
    status_code: int
    link: Link | None = None


class FormTooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        self.size = size


def field_errors(problems: dict[str, str]) -> dict[str, str]:
    """Settings problems as the words shown beside each field: "Name prefix is 31 characters long; ..."."""
    return {name: f"{FIELDS[name].label if name in FIELDS else name.replace('_', ' ').capitalize()} {problem}"
            for name, problem in problems.items()}


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def wants_json(request: Request) -> bool:
    """The page's own script sends its forms with fetch() and keeps what was typed; without it, HTML."""
    return request.headers.get("accept", "").startswith("application/json")


async def read_form(request: Request) -> dict[str, str]:
    """The form's text fields; a body larger than any real form is refused before it is parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormTooLarge(int(declared))
    try:
        form = await request.form(max_part_size=MAX_FORM_BYTES)
    except (HTTPException, MultiPartException):
        raise FormTooLarge(None) from None
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if sum(len(v) for v in values.values()) > MAX_FORM_BYTES:
        raise FormTooLarge(sum(len(v.encode()) for v in values.values()))
    return values


def shown(values: dict[str, str]) -> dict[str, str]:
    """Plain values to show back in the form: one longer than its field allows is never echoed."""
    return {k: ("" if k in FIELDS and len(v) > FIELDS[k].max_length else v) for k, v in values.items()}


class Wizard:
    def __init__(self, target: Target, *, health_timeout: int = 120, relay_image: str | None = None,
                 vm_image: str | None = None, runner: enginejob.Runner | None = None,
                 swept: Sequence[str] = ()) -> None:
        self.target = target
        # What the start's sweep found (jobs of an earlier wizard or CLI killed outright, and what they may
        # have left at Fly): said on the form page too, where a user who never sees the terminal looks.
        self.swept = list(swept)
        self.health_timeout = health_timeout
        self.images = {k: v for k, v in (("relay_image", relay_image), ("vm_image", vm_image)) if v}
        self.jobs = Jobs()
        self.runner = runner or enginejob.Runner()
        self.stopping = False
        self.streams = 0  # open event streams (a stopping wizard waits for them to deliver `end`)

    # -- rendering ---------------------------------------------------------------------------------

    def page(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(rehearsal=self.target.rehearsal, **context)
        return HTMLResponse(html, status_code=status_code, headers=HEADERS)

    def form(self, values: dict[str, str] | None = None, refusal: Refusal | None = None) -> HTMLResponse:
        return self.page("form.html", refusal.status_code if refusal else 200,
                         values={**DEFAULTS, **shown(values or {})}, errors=refusal.errors if refusal else {},
                         problem=refusal.problem if refusal else None, link=refusal.link if refusal else None,
                         swept=self.swept,
                         regions=sorted(REGIONS.items(), key=lambda kv: kv[1]), channels=list(CHANNELS.items()),
                         sizes=list(VM_SIZES))

    def teardown_page(self, values: dict[str, str], refusal: Refusal | None = None) -> HTMLResponse:
        return self.page("teardown.html", refusal.status_code if refusal else 200,
                         values={"prefix": "", "org": "personal", **shown(values)},
                         errors=refusal.errors if refusal else {}, problem=refusal.problem if refusal else None,
                         link=refusal.link if refusal else None)

    def refuse(self, request: Request, refusal: Refusal, values: dict[str, str], *,
               teardown: bool = False) -> Response:
        """The form again with the words beside each field: as JSON for the page's script (which keeps
        every value typed), as the page itself without it. Never a secret either way."""
        if wants_json(request):
            return JSONResponse({"problem": refusal.problem, "errors": refusal.errors,
                                 "link": refusal.link.__dict__ if refusal.link else None},
                                status_code=refusal.status_code, headers=HEADERS)
        return self.teardown_page(values, refusal) if teardown else self.form(values, refusal)

    def message(self, title: str, message: str, status_code: int, back: str = "/",
                link: Link | None = None) -> HTMLResponse:
        return self.page("message.html", status_code, title=title, message=message, back=back, link=link)

    def too_large(self, request: Request, exc: FormTooLarge) -> Response:
        size = f" ({exc.size / 1e6:.1f} MB)" if exc.size and exc.size >= 1e6 else \
            f" ({exc.size // 1000} KB)" if exc.size else ""
        words = (f"The form was far too large{size}: a whole form is at most {MAX_FORM_BYTES // 1024} KB, and no "
                 "token or key comes near that. Something else was pasted into a field: go back, check each "
                 "field, and paste the right value again.")
        if wants_json(request):
            return JSONResponse({"problem": words, "errors": {}, "link": None}, status_code=413, headers=HEADERS)
        return self.message("Form too large", words, 413)

    def running_link(self, prefix: str, holder: enginejob.Holder | None = None) -> Link | None:
        """The job holding ``prefix``, when it is this server's (another process's has no page here)."""
        running = (self.jobs.by_process(holder.job) if holder is not None and holder.job else None) \
            or self.jobs.running(prefix)
        return Link(f"/jobs/{running.id}", f"See the {running.kind} of {prefix}") if running else None

    def busy(self, prefix: str, words: str, holder: enginejob.Holder | None = None) -> Refusal:
        return Refusal(sentence(words), {"prefix": f"Name prefix {prefix!r} is busy: another job of it is running"},
                       409, self.running_link(prefix, holder))

    # -- routes ------------------------------------------------------------------------------------

    async def index(self, _request: Request) -> Response:
        return self.form()

    async def plan(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormTooLarge as exc:
            return self.too_large(request, exc)
        values = {k: form.get(k, "") for k in PLAIN_FIELDS}
        settings_in: dict[str, Any] = {k: values[k] for k in ("prefix", "org", "region", "channel", "vm_size",
                                                              "volume_size_gb")}
        settings_in.update(self.images)
        credentials_in = {k: form.get(k, "") for k in SECRET_FIELDS}
        credentials_in["twilio_whatsapp_number"] = values["twilio_whatsapp_number"]
        try:
            parsed = parse_form(settings_in, credentials_in)
        except SettingsError as exc:
            return self.refuse(request, Refusal(FIX_BELOW, field_errors(exc.problems), 422), values)
        settings, credentials = parsed.settings, parsed.credentials
        # Any process's job (this wizard's, a CLI's) of the prefix: said before anything is asked of Fly.
        holder = self.runner.holder(prefix_key(self.target, settings.prefix))
        if holder is not None:
            return self.refuse(request, self.busy(settings.prefix, f"{holder.sentence()}; wait for it to finish, "
                                                  "then try again (or use another prefix).", holder), values)
        try:
            account = await asyncio.to_thread(check_account, self.target, credentials.token, settings)
        except AccountError as exc:
            return self.refuse(request, Refusal(f"Please fix the field marked below: {FIELDS[exc.field].label}.",
                                                {exc.field: str(exc)}, 422), values)
        try:
            refuse_existing(account, settings)
        except AccountError as exc:
            teardown = Link(f"/teardown?prefix={settings.prefix}&org={settings.org}",
                            f"Tear down {settings.prefix}")
            return self.refuse(request, Refusal(str(exc), {"prefix": f"Name prefix {settings.prefix!r} "
                                                                    "is in use (see above)"}, 409, teardown), values)
        job = self.jobs.add(Job("deploy", settings, self.target, credentials=credentials, account=account,
                                notes=parsed.notes))
        if wants_json(request):
            return JSONResponse({"next": f"/jobs/{job.id}/plan"}, headers=HEADERS)
        return self.plan_page_of(job)

    def plan_page_of(self, job: Job) -> Response:
        assert job.credentials is not None and job.account is not None
        return self.page("plan.html", job=job, items=plan(job.settings, job.account, self.target, job.credentials),
                         ttl_minutes=PLAN_TTL_SECONDS // 60)

    async def plan_page(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None or job.kind != "deploy":
            return self.expired()
        if job.state != "planned":
            return RedirectResponse(f"/jobs/{job.id}", status_code=303)
        return self.plan_page_of(job)

    def expired(self) -> Response:
        return self.message("Plan expired", "This plan is no longer here (plans are kept for "
                            f"{PLAN_TTL_SECONDS // 60} minutes, and forgotten when the server restarts). "
                            "Fill in the form again.", 404)

    async def deploy(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None or job.kind != "deploy":
            return self.expired()
        if job.state != "planned":  # running, done or cancelled: its page says which
            return RedirectResponse(f"/jobs/{job.id}", status_code=303)
        if self.stopping:
            return self.message(*STOPPING, 503)
        credentials = job.credentials
        assert credentials is not None
        try:  # the job process takes the prefix's lock here: a second deploy of it gets its answer at once
            process = start_deploy(self.runner, self.target, job.settings, credentials, job.add,
                                   health_timeout=self.health_timeout)
        except enginejob.Busy as exc:
            return self.message("Already running", sentence(str(exc)), 409,
                                link=self.running_link(job.settings.prefix, exc.holder))
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
            job.finish("cancelled")
        return RedirectResponse("/", status_code=303)

    async def job_page(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return self.message("Not found", "No such job (jobs are forgotten when the server restarts).", 404)
        if job.state == "planned":
            return RedirectResponse(f"/jobs/{job.id}/plan", status_code=303)
        return self.page("job.html", job=job)

    async def job_state(self, request: Request) -> Response:
        """What the start page's list of this browser's jobs shows (no credential, no step text)."""
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"state": "forgotten"}, status_code=404, headers=HEADERS)
        return JSONResponse({"id": job.id, "kind": job.kind, "prefix": job.settings.prefix, "state": job.state},
                            headers=HEADERS)

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

    async def teardown_form(self, request: Request) -> Response:
        """Prefilled from the query (the "already exists" link); a value too long for its field is not echoed."""
        return self.teardown_page({k: request.query_params.get(k, "") for k in ("prefix", "org") if
                                   request.query_params.get(k)})

    async def teardown(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormTooLarge as exc:
            return self.too_large(request, exc)
        values = {k: form.get(k, "") for k in ("prefix", "org")}
        errors: dict[str, str] = {}
        settings = token = None
        try:
            settings, token = parse_teardown({"prefix": values["prefix"], "org": values["org"]}, form.get("fly_token"))
        except SettingsError as exc:
            errors.update(field_errors(exc.problems))
        if form.get("confirm") != "yes":
            errors["confirm"] = "Tick the box to confirm: this removes both apps and the agent's volume."
        if errors or settings is None or token is None:
            return self.refuse(request, Refusal(FIX_BELOW, errors, 422), values, teardown=True)
        if self.stopping:
            return self.message(*STOPPING, 503)
        job = Job("teardown", settings, self.target)
        try:
            process = start_teardown(self.runner, self.target, settings, token, job.add)
        except enginejob.Busy as exc:
            return self.refuse(request, self.busy(settings.prefix, str(exc), exc.holder), values, teardown=True)
        job.process = process

        def work(job: Job) -> State:
            job.left_behind = teardown_outcome(process, job.settings, runner=self.runner)
            return "failed" if job.left_behind else "succeeded"

        self.jobs.add(job)
        self.jobs.start(job, work)
        if wants_json(request):
            return JSONResponse({"next": f"/jobs/{job.id}"}, headers=HEADERS)
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
        while self.jobs.all_running() and time.monotonic() - start < grace and not forced():
            await asyncio.sleep(0.1)
        for job in self.jobs.all_running():
            if job.process is not None:
                job.process.cancel()
        start = time.monotonic()
        while self.jobs.all_running() and time.monotonic() - start < rollback_limit and not forced():
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
        Route("/jobs/{job_id}/plan", wizard.plan_page),
        Route("/jobs/{job_id}/state", wizard.job_state),
        Route("/jobs/{job_id}", wizard.job_page),
        Route("/jobs/{job_id}/events", wizard.events),
        Route("/teardown", wizard.teardown_form),
        Route("/teardown", wizard.teardown, methods=["POST"]),
        Route("/healthz", wizard.healthz),
    ])
    app.state.wizard = wizard
    return app
