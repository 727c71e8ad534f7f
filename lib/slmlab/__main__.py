"""``python -m slmlab`` is the ``slmlab`` command."""

import sys

from slmlab.cli import main

sys.exit(main())
