"""``python -m injector``: the same as ``sidecar-injector``."""

import sys

from injector.cli.main import main

sys.exit(main())
