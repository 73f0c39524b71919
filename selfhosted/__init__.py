"""Self-hosted deploys (issue 14): a relay and an agent VM on the user's own Fly account, from a
phone-friendly wizard page (``python -m selfhosted wizard``) or a CLI (``setup``/``teardown``).

No imports here on purpose: the dynamic provider process unpickles ``selfhosted.health`` on several
threads, and a package ``__init__`` that imports its submodules deadlocks that (see fly/providers).
"""
