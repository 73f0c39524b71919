"""The first thing a deploy does with the user's token: which org it reaches, whether it can create
apps there, and what of the plan already exists. Reads only; creates nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from fly.client import FlyClient, RetryPolicy
from fly.connection import FlyConnection
from fly.errors import FlyAPIError, FlyAuthError, FlyConnectionError, FlyError, FlyForbidden, FlyGraphQLError

from .settings import DeploySettings
from .target import Target


class AccountError(Exception):
    """The token can't do what the deploy needs; the message says what and how to fix it, and ``field``
    names the form field the fix is in (the wizard marks that one)."""

    def __init__(self, message: str, field: str = "fly_token") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Account:
    org_slug: str
    org_name: str
    can_create_apps: bool
    existing_apps: list[str] = field(default_factory=list)  # apps of the plan the org already has


# The user is waiting on the page: answer within seconds rather than retrying for minutes.
INTERACTIVE_RETRY = RetryPolicy(attempts=4, max_seconds=15.0)


def connect(target: Target, token: str, retry: RetryPolicy | None = None) -> FlyClient:
    connection = FlyConnection(api_base_url=target.api_base_url, flaps_base_url=target.flaps_base_url,
                               token=token)  # type: ignore[arg-type]  # pydantic makes it a SecretStr
    return FlyClient(connection, retry=retry)


def check_account(target: Target, token: str, settings: DeploySettings) -> Account:
    where = "flysim (rehearsal)" if target.rehearsal else "Fly"
    try:
        with connect(target, token, INTERACTIVE_RETRY) as client:
            try:
                org = client.get_organization(settings.org)
            except FlyGraphQLError as exc:
                if not any("not find" in m.lower() or "not found" in m.lower() for m in exc.messages):
                    raise
                org = None
            if org is None:
                # Fly answers "not found" alike for an org that doesn't exist, another org's, and one a
                # deploy token (limited to its app) can't see: the likeliest first, then the others.
                raise AccountError(
                    f"This token can't see the organization {settings.org!r} on {where}. A deploy token is "
                    f"limited to one app and can't create apps: use an org token (Fly dashboard: Tokens, create "
                    f"an org token for {settings.org!r}; or `fly tokens create org -o {settings.org}`). Or "
                    "correct the organization: its slug as the Fly dashboard shows it (e.g. personal)")
            try:
                # Listing the org's apps needs org-level access, the access creating apps needs; a
                # token limited to one app (a deploy token) is refused here, before anything is made.
                apps = {a.name: a for a in client.list_apps(org.slug)}
            except FlyForbidden:
                raise AccountError(
                    f"This token can't create apps in {org.slug!r}: it is limited to less than the organization "
                    f"(a deploy token is limited to one app). Use an org token (Fly dashboard: Tokens, create an "
                    f"org token for {org.slug!r}; or `fly tokens create org -o {org.slug}`)") from None
            existing = [name for name in (settings.relay_app, settings.vm_app) if name in apps]
            for name in (settings.relay_app, settings.vm_app):
                if name not in apps and client.find_app(name) is not None:
                    raise AccountError(f"The prefix {settings.prefix!r} makes the app name {name!r}, which another "
                                       "organization already has (app names are global on Fly): choose another "
                                       "prefix", field="prefix")
            return Account(org_slug=org.slug, org_name=org.name or org.slug, can_create_apps=True,
                           existing_apps=existing)
    except AccountError:
        raise
    except FlyAuthError:
        raise AccountError(f"{where} refused the token (unauthorized): paste the whole token, e.g. the output of "
                           "`fly tokens create org`") from None
    except FlyGraphQLError as exc:
        if any("unauthorized" in m.lower() or "token" in m.lower() for m in exc.messages):
            raise AccountError(f"{where} refused the token: paste the whole token, e.g. the output of "
                               "`fly tokens create org`") from None
        raise AccountError(f"{where} could not check the token: {'; '.join(exc.messages)}") from None
    except FlyConnectionError:
        raise AccountError(f"{where} can't be reached ({target.api_base_url}); check the connection and retry") from None
    except (FlyAPIError, FlyError) as exc:
        raise AccountError(f"{where} could not check the token: {exc}") from None


class AlreadyExists(AccountError):
    """Apps of the prefix exist and this deploy has no state of them: they are never taken over. ``code``
    tells callers apart from other account errors (the wizard turns it into a link to the teardown of
    ``prefix``)."""

    code = "already_exists"

    def __init__(self, apps: list[str], org_slug: str, prefix: str) -> None:
        self.apps, self.org_slug, self.prefix = list(apps), org_slug, prefix
        super().__init__(f"{' and '.join(apps)} already exist in {org_slug!r}: tear them down first "
                         f"(`python -m selfhosted teardown --prefix {prefix}` or the wizard's teardown page), or "
                         "choose another prefix")


def refuse_existing(account: Account, settings: DeploySettings) -> None:
    """A deploy without the state of an earlier one must not take over its apps: the agent's volume
    would not be found again, and a new, empty one would be mounted in its place."""
    if account.existing_apps:
        raise AlreadyExists(account.existing_apps, account.org_slug, settings.prefix)
