"""The `circuitnn` command line, the top layer: one lazily loaded module per command, each
parsing its options, calling the layers below and printing; nothing below imports it."""

from __future__ import annotations

import importlib
import os
import sys

import click

from circuitnn.errors import CircuitnnError

# command name -> "module:attribute" of a click command; imported only when used
COMMANDS = {
    "fit": "circuitnn.cli.fit:fit",
    "fit-pulse": "circuitnn.cli.fit:fit_pulse",
    "demo": "circuitnn.cli.demo:demo",
    "device": "circuitnn.cli.device:device",
    "netlist": "circuitnn.cli.tile:netlist",
    "simulate": "circuitnn.cli.tile:simulate",
    "surrogate": "circuitnn.cli.surrogate:surrogate",
    "network": "circuitnn.cli.network:network",
    "mcnn": "circuitnn.cli.mcnn:mcnn",
    "export": "circuitnn.cli.export:export",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # layer not installed in this build
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="circuitnn")
def cli() -> None:
    """circuitnn: fit memristor models to measured data, simulate 1T1R tiles in ngspice,
    and validate neural-network accuracy under circuit effects."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every error into one line and a non-zero exit."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("circuitnn: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"circuitnn: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CircuitnnError as exc:
        click.echo(f"circuitnn: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("circuitnn: interrupted (finished work was kept)", err=True)
        sys.exit(130)
    except Exception as exc:  # last resort: never show a traceback to a user
        if os.environ.get("CIRCUITNN_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"circuitnn: internal error: {type(exc).__name__}: {msg} "
                   "(set CIRCUITNN_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)

