"""``skyrl train`` (the real command) with a plugin that holds a run at a chosen step, so that a
test can SIGKILL it at a known point::

    SKYRL_TEST_HOLD_AT=3 SKYRL_TEST_HELD=/tmp/held python restart_support.py RUN.toml [overrides...]

With both variables set, the run writes the file named by ``SKYRL_TEST_HELD`` once step
``SKYRL_TEST_HOLD_AT`` has trained, before that step is logged or checkpointed (the
``skyrl_step_end`` hook), and then waits there until it is killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from skyrl_core import hookimpl

HOLD_AT, HELD = "SKYRL_TEST_HOLD_AT", "SKYRL_TEST_HELD"


@hookimpl
def skyrl_step_end(run: Any, step: int, metrics: dict[str, Any]) -> None:
    hold_at = os.environ.get(HOLD_AT)
    if hold_at and step == int(hold_at):
        Path(os.environ[HELD]).write_text(str(step))
        while True:  # until SIGKILL
            time.sleep(1)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import restart_support  # the plugin under its importable name (not __main__)

    from skyrl_core.commands import train_main
    from skyrl_core.testing.helpers import fresh_registry

    sys.exit(train_main(sys.argv[1], sys.argv[2:], registry=fresh_registry(restart_support)))
