"""skyrl plugin module of skyrl-backend-sglang: its hook implementations.

Registered through the `skyrl` entry point in pyproject.toml. Registers the ``sglang``
inference backend (its implementation is imported only when a run selects it) and the
``skyrl sglang-check`` command.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md

from skyrl_backend_sglang.config import SGLangBackendConfig
from skyrl_core.api import ComponentSpec, hookimpl


def sglang_version() -> str | None:
    """The installed SGLang version, or None."""
    try:
        return md.version("sglang")
    except md.PackageNotFoundError:
        return None


@hookimpl
def skyrl_register_backends() -> list[ComponentSpec]:
    version = sglang_version()
    installed = f"SGLang {version}" if version else "SGLang NOT INSTALLED (pip install sglang)"
    return [
        ComponentSpec(
            "sglang",
            "skyrl_backend_sglang.backend:SGLangBackend",
            f"{installed}: in-process Engine or HTTP server; exact stop strings, seeds, weight sync.",
            SGLangBackendConfig,
        )
    ]


@hookimpl
def skyrl_add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sglang-check",
        help="Report the SGLang version and whether an engine starts and generates (tiny local model).",
    )
    parser.add_argument("--model", default=None, help="Model folder to load (default: a tiny model built locally).")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'.")
    parser.set_defaults(func=_check_command)


def _check_command(args: argparse.Namespace) -> int:
    from skyrl_backend_sglang.check import run_check

    return run_check(args.model, args.device)
