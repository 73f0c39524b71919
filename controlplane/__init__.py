"""The slice's control plane: an MCP server exposing the runbook's ``infra_*`` tools (per-customer apps
in the slice's org), and phase 6 of the runbook, which runs the same functions.

No imports here: ``python -m controlplane validate`` and the phase 6 step of ``pulumi up`` must not pay
for the MCP SDK or Pulumi, and dynamic providers are unpickled on several threads.
"""

# The control plane's version, reported as the MCP server's ``serverInfo.version``.
__version__ = "2026.12.0"
