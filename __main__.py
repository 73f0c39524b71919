"""The Artifact org slice: one stack, one slice. See README.md."""

from fly.providers.process_exit import skip_teardown_in_program_process, stop_quietly_on_interrupt

# First: the engine interrupts a program it is done with (a cancelled update), which must end without a
# traceback, even while the imports below run (fly/providers/process_exit.py).
stop_quietly_on_interrupt()

import pulumi

from components import ConfigError, OrgSlice, SliceSecrets, load_from_pulumi
from components.config import looks_secret
from components.deploy import preflight
from fly.appconfig import FlyTomlError
from fly.providers import FlyConnectionArgs

# The language host's final sys.exit(0) leaves without the interpreter's teardown of the SDK's modules,
# which every preview, up and destroy would otherwise wait for (fly/providers/process_exit.py).
skip_teardown_in_program_process()

try:
    # Everything the stack config and deploy/*.toml can get wrong fails here, before any resource
    # is registered (and so before any API call).
    config, endpoint, token = load_from_pulumi()
    preflight(config)
    connection = FlyConnectionArgs(api_base_url=endpoint.api_base_url, flaps_base_url=endpoint.flaps_base_url,
                                   token=token)
    org_slice = OrgSlice("slice", config=config, endpoint=endpoint, secrets=SliceSecrets(), connection=connection)
except (ConfigError, FlyTomlError, ValueError) as exc:
    # RunError prints the message alone, no traceback: this is input to fix, not a bug. One line:
    # Pulumi's summary shows the first.
    raise pulumi.RunError(" ".join(str(exc).split())) from None
except Exception as exc:  # a bug, not bad input; still one line, and what to do about it
    detail = "details withheld: they look like a credential" if looks_secret(str(exc)) else " ".join(str(exc).split())
    raise pulumi.RunError(f"the program failed while reading its configuration ({type(exc).__name__}: {detail}); "
                          "this is a bug: please report it with this line") from None

# The handover manifest (phase 7): everything a control plane needs, and no secret value.
manifest = org_slice.manifest
pulumi.export("slice", config.prefix)
pulumi.export("org", manifest.apply(lambda m: m["org"]))
pulumi.export("token", manifest.apply(lambda m: m["token"]))
pulumi.export("apps", manifest.apply(lambda m: m["apps"]))
pulumi.export("fly", manifest.apply(lambda m: m["fly"]))
# The control plane's org token, for whoever hands the slice over: a secret output, encrypted in state.
pulumi.export("controlPlaneToken", org_slice.token.token)
