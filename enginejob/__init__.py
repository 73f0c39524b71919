"""The one runner for engine processes, their locks and their death.

The wizard, the self-hosted CLI and the control plane run Pulumi engine work in *job processes*
(``Runner.start``): a child Python process in a session of its own that receives its payload (secrets
included) through a pipe, reports events back, and holds the job's key lock for as long as it lives. When
the process that started it dies, whatever the signal, the pipe closes and the job acts as on a cancel
(a deploy rolls back), then removes every process and file it made. ``Runner.sweep`` at the next start
finds what a job killed outright left behind. ``Runner.hold`` is the same cross-process key lock for work
that needs no engine.

No import-time side effects here: the engine's provider processes import packages on several threads.
"""

from .locks import Busy, Holder
from .runner import Job, JobDied, JobFailed, Runner, Swept, default_state_dir
from .context import JobContext

__all__ = ["Busy", "Holder", "Job", "JobContext", "JobDied", "JobFailed", "Runner", "Swept", "default_state_dir"]
