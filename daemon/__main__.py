"""`python -m lavalamp.daemon` is the `lavalamp` command."""

import sys

from .cli import main

sys.exit(main())
