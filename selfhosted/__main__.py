"""``python -m selfhosted wizard|setup|teardown`` (see selfhosted/cli.py)."""

import sys

from .cli import main

sys.exit(main())
