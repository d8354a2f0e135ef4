"""``python -m regimelab``: the ``regimelab`` command."""

import sys

from regimelab.cli import main

sys.exit(main())
