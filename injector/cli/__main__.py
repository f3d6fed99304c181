"""``python -m injector.cli``: the same as ``sidecar-injector``."""

import sys

from injector.cli.main import main

sys.exit(main())
