"""The ``skyrl`` command.

    skyrl plugins [--json]                      installed plugins, their status and components
    skyrl components [KIND] [--json]            registered components by kind
    skyrl config validate FILE [KEY=VALUE...]   exit 0, or 2 with every error of the file
    skyrl config show FILE [KEY=VALUE...]       resolved config, batch plan, providers
    skyrl config reference                      the configuration reference (docs/config.md)
    skyrl config import-skyrl [--yaml F] [K=V...] --out run.toml   translate a SkyRL-Train config
    skyrl doctor                                Python, torch, GPUs, backends, plugin failures
    skyrl train FILE [KEY=VALUE...]             run RL training
    skyrl eval FILE [KEY=VALUE...]              evaluate a model on data.eval
    skyrl sft FILE [KEY=VALUE...]               run only the supervised [warm_start] phase
    skyrl export FILE [--checkpoint P] [--out D] write a Hugging Face folder from a checkpoint
    skyrl data prepare NAME --out DIR [--key value...]   run a dataset preparer

Errors caused by input (config, data, plugins) print one message and exit with code 2; so does
a ``ValueError`` or ``TypeError`` raised by a plugin's hook or dataset preparer (the plugin
rejecting its input). Any other exception from a plugin's code is one line naming the plugin,
exit code 1 (``skyrl_core.blame``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyrl_core.errors import SkyrlError, did_you_mean
from skyrl_core.plugins import Registry, build_registry
from skyrl_core.specs import Kind


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


# -- plugins / components --------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = args.registry
    if args.json:
        _print_json(
            [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "module": p.module,
                    "status": p.status,
                    "error": p.error,
                    "components": p.components,
                }
                for p in registry.plugins
            ]
        )
    else:
        rows = []
        for p in registry.plugins:
            provided = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(p.components.items())) or "-"
            rows.append([p.distribution, p.version, p.status, provided])
        print(_table(rows, ["distribution", "version", "status", "components"]))
        for p in registry.plugins:
            if p.status == "failed":
                print(f"error: plugin {p.describe()} failed to load ({p.module}): {p.error}", file=sys.stderr)
        for conflict in registry.conflicts:
            print(f"warning: conflict: {conflict}", file=sys.stderr)
    return 2 if registry.failed() else 0


def _parse_kind(text: str) -> Kind:
    aliases = (
        {k.value: k for k in Kind} | {k.plural: k for k in Kind} | {"env": Kind.ENVIRONMENT, "envs": Kind.ENVIRONMENT}
    )
    key = text.strip().lower().replace("-", "_")
    if key in aliases:
        return aliases[key]
    raise SkyrlError(
        f"unknown component kind {text!r}.{did_you_mean(key, [k.value for k in Kind])} "
        f"Kinds: {', '.join(k.value for k in Kind)}."
    )


def _listed(registry: Registry, kind: Kind) -> list[tuple[Any, bool]]:
    """``(component, ambiguous)`` of every provider of every name of ``kind``, by name."""
    out = []
    for name in registry.names(kind):
        providers = registry.providers(kind, name)
        out += [(c, len(providers) > 1) for c in providers]
    return out


def cmd_components(args: argparse.Namespace) -> int:
    from skyrl_core.plugins import QUALIFIER

    registry = args.registry
    kinds = [_parse_kind(args.kind)] if args.kind else list(Kind)
    if args.json:
        _print_json(
            {
                kind.value: [
                    {
                        "name": c.name,
                        "summary": c.spec.summary,
                        "distribution": c.provider.distribution,
                        "version": c.provider.version,
                        "options": _options_of(c.spec.config_cls),
                        # several distributions provide the name: only the qualified name selects this one
                        **({"conflict": True, "qualified_name": f"{c.provider.distribution}{QUALIFIER}{c.name}"}
                           if ambiguous else {}),
                    }
                    for c, ambiguous in _listed(registry, kind)
                ]
                for kind in kinds
            }
        )
        return 0
    for kind in kinds:
        listed = _listed(registry, kind)
        print(f"{kind.plural.replace('_', ' ')}:")
        if not listed:
            print("  (none installed)")
        for c, ambiguous in listed:
            name = f"{c.provider.distribution}{QUALIFIER}{c.name}" if ambiguous else c.name
            note = "  CONFLICT: several distributions provide this name; select it qualified" if ambiguous else ""
            print(f"  {name:<24} {c.spec.summary}  [{c.provider.distribution}]{note}")
        print()
    for line in registry.conflicts:
        print(f"warning: conflict: {line}", file=sys.stderr)
    return 0


def _options_of(cls: type | None) -> list[dict[str, Any]]:
    if cls is None:
        return []
    import attrs

    out = []
    for f in attrs.fields(cls):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append({"name": f.name, "default": default, "help": f.metadata.get("help", "")})
    return out


# -- config ----------------------------------------------------------------------------------


def cmd_config_validate(args: argparse.Namespace) -> int:
    from skyrl_core.commands import load_run_config
    from skyrl_core.components import resolve_components

    cfg, registry = load_run_config(args.file, args.overrides, args.registry)
    resolve_components(cfg, registry)  # every selected component imports and keeps its contract
    print(f"{args.file}: OK")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from skyrl_core.commands import load_run_config
    from skyrl_core.config.plan import make_plan
    from skyrl_core.config.render import providers, to_dict

    cfg, registry = load_run_config(args.file, args.overrides, args.registry)
    plan = make_plan(cfg)
    prov = providers(cfg, registry)
    if args.json:
        _print_json({"config": to_dict(cfg), "plan": dict(plan.rows()), "providers": prov})
        return 0
    from skyrl_core.config.render import to_toml

    print("# resolved configuration")
    print(to_toml(to_dict(cfg)))
    print("# batch plan")
    print(_table([[k, v] for k, v in plan.rows()], ["quantity", "value"]))
    print("\n# components")
    print(_table([[k, v["name"], v["provider"]] for k, v in prov.items()], ["role", "name", "provided by"]))
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from skyrl_core.config.render import reference_markdown

    text = reference_markdown()
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


def cmd_config_import_skyrl(args: argparse.Namespace) -> int:
    from skyrl_core.config.skyrl_import import Options, import_main

    options = Options(env=args.env, backend=args.backend, convention=args.convention, sets=tuple(args.set or ()))
    return import_main(args.yaml, args.overrides, args.out, options, args.registry, check=not args.no_validate)


# -- doctor ----------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from skyrl_core.doctor import report

    lines, problems = report(args.registry)
    print("\n".join(lines))
    return 1 if problems and args.strict else 0


# -- run commands (implemented in their own modules) ----------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from skyrl_core.commands import train_main

    return train_main(args.file, args.overrides, args.registry)


def cmd_eval(args: argparse.Namespace) -> int:
    from skyrl_core.commands import eval_main

    return eval_main(args.file, args.overrides, args.registry)


def cmd_sft(args: argparse.Namespace) -> int:
    from skyrl_core.commands import sft_main

    return sft_main(args.file, args.overrides, args.registry)


def cmd_export(args: argparse.Namespace) -> int:
    from skyrl_core.commands import export_main

    return export_main(args.file, args.overrides, checkpoint=args.checkpoint, out=args.out, registry=args.registry)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from skyrl_core.prepare import prepare_main

    return prepare_main(args.name, args.out, args.options, args.registry)


# -- parser ----------------------------------------------------------------------------------


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skyrl", description="RL post-training for language models, built from plugins."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help="list registered components")
    p.add_argument("kind", nargs="?", help="only this kind: " + ", ".join(k.value for k in Kind))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_components)

    cfg = sub.add_parser("config", help="validate or show a config file").add_subparsers(
        dest="config_command", metavar="ACTION"
    )
    p = cfg.add_parser("validate", help="check a config file; exit 2 with every error")
    p.add_argument("file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_config_validate)
    p = cfg.add_parser("show", help="print the resolved config, batch plan and providers")
    p.add_argument("file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_config_show)
    p = cfg.add_parser("reference", help="print the configuration reference (Markdown)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_config_reference)
    p = cfg.add_parser(
        "import-skyrl",
        help="translate a SkyRL-Train config (YAML and/or Hydra overrides) into a skyrl TOML file",
        description="Translate a SkyRL-Train config into a skyrl TOML file, printing every translation and "
        "every difference in meaning (docs/migrating_from_skyrl.md). Keys that cannot be placed fail (exit 2).",
    )
    p.add_argument("overrides", nargs="*", metavar="SKYRL_OVERRIDE",
                   help="SkyRL's Hydra overrides, as in its scripts: key=value, +key=value, ~key")
    p.add_argument("--yaml", help="a SkyRL YAML config file (applied before the overrides)")
    p.add_argument("--out", required=True, help="the TOML file to write")
    p.add_argument("--env", choices=["skyrlgym", "native"], default="skyrlgym",
                   help="environment.env_class: skyrl-gym's environment through the skyrl-env-skyrlgym adapter "
                   "(default) or skyrl's own environment of that name")
    p.add_argument("--backend", help="our inference backend instead of SkyRL's generator.backend (e.g. native)")
    p.add_argument("--convention", choices=["skyrl-train", "skyrl"], default="skyrl-train",
                   help="whose conventions the config follows: the classic skyrl-train package (default) or "
                   "NovaSky's current SkyRL (token_mean is a mini-batch mean there)")
    p.add_argument("--set", action="append", metavar="OUR.KEY=VALUE",
                   help="an override of our own keys, applied after the translation (repeatable), "
                   "e.g. --set trainer.steps=2")
    p.add_argument("--no-validate", action="store_true",
                   help="write the file even when it does not validate with the plugins installed here")
    p.set_defaults(func=cmd_config_import_skyrl)

    p = sub.add_parser("doctor", help="check the installation")
    p.add_argument("--strict", action="store_true", help="exit 1 when a problem is found")
    p.set_defaults(func=cmd_doctor)

    for name, func, text in (
        ("train", cmd_train, "run RL training"),
        ("eval", cmd_eval, "evaluate a model on data.eval"),
        ("sft", cmd_sft, "run only the supervised [warm_start] phase"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("file", help="TOML config file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.lr=1e-6")
        p.set_defaults(func=func)

    p = sub.add_parser("export", help="write a Hugging Face model folder from a checkpoint")
    p.add_argument("file", help="TOML config file of the run")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--checkpoint", help="checkpoint directory (default: the run's latest)")
    p.add_argument("--out", help="output folder (default: <run dir>/export)")
    p.set_defaults(func=cmd_export)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", metavar="ACTION")
    p = data.add_parser(
        "prepare",
        help="run a dataset preparer (see `skyrl components dataset_preparer`)",
        epilog="Options of the preparer follow as --key value (see `skyrl components dataset_preparer`).",
    )
    p.add_argument("name")
    p.add_argument("--out", required=True, help="output directory")
    # The preparer's own `--key value` options are collected by main() (parse_known_args):
    # a REMAINDER positional would also swallow `--out` when it follows NAME.
    p.set_defaults(func=cmd_data_prepare, options=[], takes_options=True)

    _add_plugin_commands(registry or build_registry(), sub)
    return parser


def _add_plugin_commands(registry: Registry, sub: argparse._SubParsersAction) -> None:
    """Call each plugin's ``skyrl_add_commands``; one that fails is reported and skipped."""
    providers = {p.name: p for p in registry.plugins}
    for impl in registry.hook.skyrl_add_commands.get_hookimpls():
        try:
            impl.function(*[{"subparsers": sub}[arg] for arg in impl.argnames])
        except Exception as exc:  # a broken plugin must not break every command
            who = providers[impl.plugin_name].describe() if impl.plugin_name in providers else impl.plugin_name
            print(f"warning: plugin {who} could not add its commands: {type(exc).__name__}: {exc}", file=sys.stderr)


def _version() -> str:
    from skyrl_core import __version__

    return f"skyrl {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skyrl`` console script."""
    registry: Registry | None = None
    try:
        registry = build_registry()
        parser = build_parser(registry)
        args, extra = parser.parse_known_args(argv)
        args.registry = registry
        if extra and not getattr(args, "takes_options", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:
            args.options = extra
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 2
        return int(func(args) or 0)
    except SkyrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A plugin's own code failed: name it (distribution, component or hook, where) instead of a
        # bare traceback; an exception from skyrl-core itself is a bug and keeps its traceback.
        from skyrl_core.blame import report_plugin_exception

        code = report_plugin_exception(exc, registry) if registry is not None else None
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
