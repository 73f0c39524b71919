"""The Artifact org slice: one stack, one slice. See README.md."""

import pulumi

from components import ConfigError, OrgSlice, SliceSecrets, load_from_pulumi
from fly.appconfig import FlyTomlError
from fly.providers import FlyConnectionArgs

try:
    config, endpoint, token = load_from_pulumi()
    connection = FlyConnectionArgs(api_base_url=endpoint.api_base_url, flaps_base_url=endpoint.flaps_base_url,
                                   token=token)
    org_slice = OrgSlice("slice", config=config, endpoint=endpoint, secrets=SliceSecrets(), connection=connection)
except (ConfigError, FlyTomlError, ValueError) as exc:
    # RunError prints the message alone, no traceback: this is input to fix, not a bug.
    raise pulumi.RunError(str(exc)) from None

# The handover manifest (phase 7): everything a control plane needs, and no secret value.
manifest = org_slice.manifest
pulumi.export("slice", config.prefix)
pulumi.export("org", manifest.apply(lambda m: m["org"]))
pulumi.export("token", manifest.apply(lambda m: m["token"]))
pulumi.export("apps", manifest.apply(lambda m: m["apps"]))
pulumi.export("fly", manifest.apply(lambda m: m["fly"]))
# The control plane's org token, for whoever hands the slice over: a secret output, encrypted in state.
pulumi.export("controlPlaneToken", org_slice.token.token)
