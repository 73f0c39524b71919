"""``python -m selfhosted wizard|setup|teardown``: the wizard's server, and the same deploy and
teardown for a terminal. Rehearsal on flysim by default; ``--fly`` for the real Fly.io.

Credentials come from the environment (FLY_API_TOKEN, ANTHROPIC_API_KEY, TWILIO_ACCOUNT_SID,
TWILIO_AUTH_TOKEN, TWILIO_WHATSAPP_NUMBER, DISCORD_BOT_TOKEN, TELEGRAM_BOT_TOKEN) or are prompted for
without echo. On the embedded flysim the rehearsal account's token is used (no Fly token needed).

Deploys and teardowns run as job processes (enginejob; see ``selfhosted.runner``): one per prefix across
every CLI and wizard on this machine, each in a session of its own, so a Ctrl-C or SIGTERM reaches only
this process, which cancels the job once (a deploy rolls back); if this process is killed outright, the
job rolls back by itself. Every start sweeps what jobs killed outright left behind, and says so.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from fly.regions import REGIONS

from .progress import Step
from .settings import CHANNELS, DEFAULT_VM_SIZE, VM_SIZES, SettingsError, parse_form, parse_settings, parse_teardown
from .target import EmbeddedFlysim, Target, fly_target, flysim_target

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FLYSIM_STATE = REPO / ".flysim" / "selfhosted.json"
SECRET_ENV = {"fly_token": "FLY_API_TOKEN", "anthropic_api_key": "ANTHROPIC_API_KEY",
              "twilio_account_sid": "TWILIO_ACCOUNT_SID", "twilio_auth_token": "TWILIO_AUTH_TOKEN",
              "discord_bot_token": "DISCORD_BOT_TOKEN", "telegram_bot_token": "TELEGRAM_BOT_TOKEN"}
PROMPTS = {"fly_token": "Fly API token", "anthropic_api_key": "Anthropic API key",
           "twilio_account_sid": "Twilio Account SID", "twilio_auth_token": "Twilio Auth Token",
           "discord_bot_token": "Discord bot token", "telegram_bot_token": "Telegram bot token"}
CHANNEL_SECRETS = {"whatsapp": ["twilio_account_sid", "twilio_auth_token"], "discord": ["discord_bot_token"],
                   "telegram": ["telegram_bot_token"]}
MARKS = {"done": "✓", "failed": "✗", "running": "…", "warning": "!", "info": "·"}


class UsageError(Exception):
    pass


def _target_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--fly", action="store_true", help="deploy to the real Fly.io (default: flysim, a rehearsal)")
    where.add_argument("--flysim-url", metavar="URL", help="use a running flysim instead of an embedded one")
    parser.add_argument("--flysim-state", metavar="FILE", type=Path, default=DEFAULT_FLYSIM_STATE,
                        help="the embedded flysim's state file, so setup and teardown see the same rehearsal "
                             "account (default: %(default)s)")


def _settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", required=True, help="apps become <prefix>-relay and <prefix>-vm")
    parser.add_argument("--org", default="personal", help="Fly organization slug (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m selfhosted", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    wizard = commands.add_parser("wizard", help="serve the deploy wizard page")
    _target_args(wizard)
    wizard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    wizard.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    wizard.add_argument("--health-timeout", type=int, default=120, help="seconds health may take to pass")
    wizard.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (needed beyond loopback: the "
                        "form carries credentials)")
    wizard.add_argument("--ssl-keyfile", help="the certificate's private key")
    wizard.add_argument("--stop-grace", type=float, default=20.0, help="on SIGTERM, seconds running jobs may take "
                        "to finish before they are rolled back (default: %(default)s)")
    wizard.add_argument("--relay-image", help="relay image (default: the [build] image of fly.relay.toml)")
    wizard.add_argument("--vm-image", help="agent VM image (default: the [build] image of fly.vm.toml)")

    setup = commands.add_parser("setup", help="deploy the relay and the agent VM")
    _target_args(setup)
    _settings_args(setup)
    setup.add_argument("--region", default="ams", help=f"Fly region (default: %(default)s; one of {', '.join(sorted(REGIONS))})")
    setup.add_argument("--vm-size", default=DEFAULT_VM_SIZE, help=f"one of {', '.join(VM_SIZES)} (default: %(default)s)")
    setup.add_argument("--volume-size-gb", default="1", help="the agent VM's volume (default: %(default)s)")
    setup.add_argument("--channel", default="whatsapp", help=f"one of {', '.join(CHANNELS)} (default: %(default)s)")
    setup.add_argument("--twilio-whatsapp-number", default=os.environ.get("TWILIO_WHATSAPP_NUMBER"),
                       help="your Twilio WhatsApp sender, e.g. +14155238886 (or TWILIO_WHATSAPP_NUMBER)")
    setup.add_argument("--relay-image", help="relay image (default: fly.relay.toml's)")
    setup.add_argument("--vm-image", help="agent VM image (default: fly.vm.toml's)")
    setup.add_argument("--health-timeout", type=int, default=120, help="seconds health may take to pass")
    setup.add_argument("--backend", metavar="URL", help="a Pulumi backend of yours to keep the state in (with "
                       "PULUMI_CONFIG_PASSPHRASE); default: a temporary one, removed afterwards")
    setup.add_argument("--yes", action="store_true", help="deploy without asking after the plan")

    teardown = commands.add_parser("teardown", help="remove the agent VM, then the relay")
    _target_args(teardown)
    _settings_args(teardown)
    teardown.add_argument("--yes", action="store_true", help="don't ask for confirmation")
    return parser


def _printer(out: TextIO) -> Any:
    def show(step: Step) -> None:
        print(f"[{step.at}] {MARKS.get(step.status, '·')} {step.text}", file=out, flush=True)
    return show


def _ask(question: str, inp: TextIO, out: TextIO) -> bool:
    print(f"{question} [y/N] ", end="", file=out, flush=True)
    answer = inp.readline()
    return answer.strip().lower() in ("y", "yes")


def _secret(name: str, env: dict[str, str], interactive: bool) -> str | None:
    value = env.get(SECRET_ENV[name])
    if value:
        return value
    if not interactive:
        raise UsageError(f"{PROMPTS[name]} is missing: set {SECRET_ENV[name]} (no terminal to prompt on)")
    return getpass.getpass(f"{PROMPTS[name]} (input hidden): ")


def _open_target(args: argparse.Namespace, stack: ExitStack, out: TextIO) -> tuple[Target, str | None]:
    """The target, and the rehearsal token where the embedded flysim provides one."""
    if args.fly:
        env = os.environ
        target = fly_target()
        if env.get("FLY_API_BASE_URL") or env.get("FLY_FLAPS_BASE_URL"):
            target = Target("fly", env.get("FLY_API_BASE_URL", target.api_base_url).rstrip("/"),
                            env.get("FLY_FLAPS_BASE_URL", target.flaps_base_url).rstrip("/"))
        return target, None
    if args.flysim_url:
        return flysim_target(args.flysim_url), None
    sim = stack.enter_context(EmbeddedFlysim(state_file=args.flysim_state))
    print(f"rehearsal: an embedded flysim at {sim.target.flaps_base_url} (state {args.flysim_state}); "
          "nothing is created on Fly.io", file=out)
    return sim.target, sim.token


def _swept_runner(out: TextIO) -> tuple[Any, list[str]]:
    """This process's job runner, after a sweep of what jobs killed outright left (their processes and
    directories), and what the sweep found, in words with what they may have left at Fly (printed too)."""
    import enginejob

    runner = enginejob.Runner()
    found = [swept.sentence() for swept in runner.sweep()]
    for sentence in found:
        print(f"note: {sentence}", file=out, flush=True)
    return runner, found


def _runner(out: TextIO) -> Any:
    return _swept_runner(out)[0]


def _follow(job: Any, out: TextIO, what: str) -> None:
    """Wait for the job; the first SIGINT or SIGTERM cancels it once (the engine gets one interrupt, and a
    deploy rolls back: the job process is in a session of its own, so a terminal's Ctrl-C reaches only
    this process), later ones only say that it is stopping."""
    import enginejob

    cancelled = False
    after = {"deploy": "the deploy is being stopped and rolled back", "teardown": "the teardown finishes removing"}

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal cancelled
        if not cancelled:
            cancelled = True
            job.cancel()
        print(f"stopping: {after.get(what, what)}; it ends by itself in a moment", file=out, flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        job.wait()  # the outcome is read by the caller
    except (enginejob.JobFailed, enginejob.JobDied):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_setup(args: argparse.Namespace, env: dict[str, str], inp: TextIO, out: TextIO) -> int:
    import enginejob

    from .account import AccountError, check_account, refuse_existing
    from .plan import plan
    from .runner import deploy_outcome, prefix_key, start_deploy

    interactive = inp.isatty()
    settings_in: dict[str, Any] = {"prefix": args.prefix, "org": args.org, "region": args.region,
                                   "vm_size": args.vm_size, "volume_size_gb": args.volume_size_gb,
                                   "channel": args.channel}
    settings_in.update({k: v for k, v in (("relay_image", args.relay_image), ("vm_image", args.vm_image)) if v})
    try:  # the plain settings first: a typo fails before any prompt or API call
        parse_settings(settings_in)
    except SettingsError as exc:
        raise UsageError(_explain(exc)) from None
    _require_engine()
    if args.backend and not env.get("PULUMI_CONFIG_PASSPHRASE"):
        raise UsageError("--backend: set PULUMI_CONFIG_PASSPHRASE too (the state's secrets are encrypted with it; "
                         "without it a later run could not read them)")
    with ExitStack() as stack:
        target, rehearsal_token = _open_target(args, stack, out)
        credentials_in: dict[str, Any] = {"twilio_whatsapp_number": args.twilio_whatsapp_number}
        credentials_in["fly_token"] = rehearsal_token or _secret("fly_token", env, interactive)
        credentials_in["anthropic_api_key"] = _secret("anthropic_api_key", env, interactive)
        for name in CHANNEL_SECRETS.get(args.channel, []):
            credentials_in[name] = _secret(name, env, interactive)
        try:
            parsed = parse_form(settings_in, credentials_in)
        except SettingsError as exc:
            raise UsageError(_explain(exc)) from None
        settings, credentials = parsed.settings, parsed.credentials
        for note in parsed.notes:  # what cleaning a pasted value removed
            print(note, file=out)
        show = _printer(out)
        runner = _runner(out)
        key = prefix_key(target, settings.prefix)
        holder = runner.holder(key)
        if holder is not None:
            show(Step(f"{holder.sentence()}; wait for it to finish, then try again", "failed"))
            return 1
        show(Step("checking the Fly token", "running"))
        try:
            account = check_account(target, credentials.token, settings)
            if args.backend is None:
                refuse_existing(account, settings)
        except AccountError as exc:
            show(Step(str(exc), "failed"))
            return 1
        show(Step(f"token ok: organization {account.org_name} ({account.org_slug}), can create apps", "done"))
        print("\nThe plan (nothing is created yet):", file=out)
        for item in plan(settings, account, target, credentials):
            print(f"  {item.what}: {item.detail}", file=out)
        print(file=out)
        if not args.yes and not (interactive and _ask("Deploy?", inp, out)):
            print("not deployed (confirm at the prompt, or pass --yes)", file=out)
            return 1
        # The job checks the account again under the prefix's lock: the answer may come minutes after the
        # plan, and another terminal or the wizard may have deployed the prefix meanwhile.
        try:
            job = start_deploy(runner, target, settings, credentials, show, backend_url=args.backend,
                               passphrase=env.get("PULUMI_CONFIG_PASSPHRASE"), health_timeout=args.health_timeout)
        except enginejob.Busy as exc:
            show(Step(str(exc), "failed"))
            return 1
        _follow(job, out, "deploy")
        result = deploy_outcome(job, runner=runner)
        if not result.ok:
            print(f"\nFAILED: {result.failure}", file=out)
            if result.left_behind:
                print(f"Still there: {', '.join(result.left_behind)}. Remove them with: python -m selfhosted "
                      f"teardown --prefix {settings.prefix} --org {settings.org}", file=out)
            else:
                print(f"Rolled back: nothing of {settings.prefix!r} is left.", file=out)
            return 1
        print(f"\nDone: the relay is up and healthy.\n  Relay URL:   {result.relay_url}\n"
              f"  Webhook URL: {result.webhook_url}\n  Next step:   {result.next_step}", file=out)
        return 0


def cmd_teardown(args: argparse.Namespace, env: dict[str, str], inp: TextIO, out: TextIO) -> int:
    import enginejob

    from .runner import start_teardown, teardown_outcome

    try:
        settings = parse_settings({"prefix": args.prefix, "org": args.org})
    except SettingsError as exc:
        raise UsageError(_explain(exc)) from None
    interactive = inp.isatty()
    if not args.yes and not interactive:
        raise UsageError("teardown removes both apps and the agent's volume: confirm with --yes "
                         "(no terminal to ask on)")
    with ExitStack() as stack:
        target, rehearsal_token = _open_target(args, stack, out)
        runner = _runner(out)
        if not args.yes:
            if not _ask(f"Remove {settings.vm_app} (machine and volume), then {settings.relay_app}, from "
                        f"{settings.org} on {target.name}?", inp, out):
                print("nothing removed", file=out)
                return 1
        try:  # cleaned as a deploy's is (a pasted token may bring invisible characters)
            settings, token = parse_teardown({"prefix": args.prefix, "org": args.org},
                                             rehearsal_token or _secret("fly_token", env, interactive))
        except SettingsError as exc:
            raise UsageError(_explain(exc)) from None
        try:
            job = start_teardown(runner, target, settings, token, _printer(out))
        except enginejob.Busy as exc:
            print(str(exc), file=out)
            return 1
        _follow(job, out, "teardown")
        return 1 if teardown_outcome(job, settings, runner=runner) else 0


def cmd_wizard(args: argparse.Namespace, out: TextIO) -> int:
    from .web import create_app, serve

    _require_engine()
    with ExitStack() as stack:
        target, rehearsal_token = _open_target(args, stack, out)
        runner, swept = _swept_runner(out)
        app = create_app(target, health_timeout=args.health_timeout, relay_image=args.relay_image,
                         vm_image=args.vm_image, runner=runner, swept=swept)
        scheme = "https" if args.ssl_certfile else "http"
        print(f"wizard: {scheme}://{args.host}:{args.port}/ (deploying to {target.name})", file=out, flush=True)
        if scheme == "http" and args.host not in ("127.0.0.1", "localhost", "::1"):
            print("warning: serving plain HTTP beyond loopback: the form's credentials would cross the network "
                  "unencrypted; pass --ssl-certfile/--ssl-keyfile or put it behind an HTTPS proxy", file=out,
                  flush=True)
        if rehearsal_token:
            print(f"rehearsal: use this Fly token in the form (a simulator's token): {rehearsal_token}",
                  file=out, flush=True)
        # No access log: paths hold no credentials, but the wizard keeps its logs to what it says itself.
        # SIGTERM and SIGINT are uvicorn's from here: it stops, and the wizard's jobs finish or roll back first.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: None)  # what uvicorn re-raises once it has stopped: nothing more
        serve(app, host=args.host, port=args.port, access_log=False, log_level="warning",
              ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, stop_grace=args.stop_grace)
    return 0


def _require_engine() -> None:
    from .runner import EngineMissing, pulumi_bin

    try:
        pulumi_bin()
    except EngineMissing as exc:
        raise UsageError(str(exc)) from None


def _explain(exc: SettingsError) -> str:
    flags = {"prefix": "--prefix", "org": "--org", "region": "--region", "vm_size": "--vm-size",
             "volume_size_gb": "--volume-size-gb", "channel": "--channel", "relay_image": "--relay-image",
             "vm_image": "--vm-image", "twilio_whatsapp_number": "--twilio-whatsapp-number"}
    return "; ".join(f"{flags.get(k) or SECRET_ENV.get(k, k)}: {v}" for k, v in exc.problems.items())


def main(argv: list[str] | None = None, *, env: dict[str, str] | None = None, inp: TextIO | None = None,
         out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Until a job runs (which has its own handling), SIGTERM stops this process as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    env = dict(os.environ) if env is None else env
    inp, out = inp or sys.stdin, out or sys.stdout
    try:
        if args.command == "setup":
            return cmd_setup(args, env, inp, out)
        if args.command == "teardown":
            return cmd_teardown(args, env, inp, out)
        return cmd_wizard(args, out)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
