"""The Artifact org slice: one stack, one slice. See README.md."""

import pulumi

from components import ConfigError, NfsServer, load_from_pulumi
from fly.providers import FlyConnectionArgs

try:
    config, endpoint, token = load_from_pulumi()
except ConfigError as exc:
    # RunError prints the message alone, no traceback: this is the user's input, not our bug.
    raise pulumi.RunError(str(exc)) from None

connection = FlyConnectionArgs(api_base_url=endpoint.api_base_url, flaps_base_url=endpoint.flaps_base_url,
                               token=token)

nfs = NfsServer("nfs", prefix=config.prefix, org_slug=config.org, region=config.primary_region,
                volume_size_gb=config.nfs_volume_size_gb, image=config.nfs_image, connection=connection,
                protect_volume=config.protect_volumes)

pulumi.export("org", config.org)
pulumi.export("prefix", config.prefix)
pulumi.export("apps", {"nfs": nfs.manifest()})
# Where the slice lives (never the token): operations such as `python -m ops validate` go there.
pulumi.export("fly", {"api_base_url": endpoint.api_base_url or "", "flaps_base_url": endpoint.flaps_base_url or ""})
