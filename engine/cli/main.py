"""``qrm``: set up the database, load the demo, manage admins and plugins, run the scheduler
and the web server."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import threading
from typing import Any

import click
from pyramid.paster import get_appsettings, setup_logging

from engine.app import make_config
from engine.errors import QrmError
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from engine.settings import as_bool

log = logging.getLogger("qrm.cli")


class Context:
    def __init__(self, config_uri: str) -> None:
        self.config_uri = config_uri
        self._registry: Any = None

    @property
    def settings(self) -> dict[str, Any]:
        return dict(get_appsettings(self.config_uri))

    def make_config(self, **overrides: Any) -> Any:
        config = make_config(dict(self.settings, **overrides))
        config.commit()
        return config

    @property
    def registry(self) -> Any:
        if self._registry is None:
            self._registry = self.make_config().registry
        return self._registry

    def run(self, func: Any, **kw: Any) -> Any:
        """Run ``func(request, **kw)`` in one transaction; a refused operation exits 1."""
        try:
            return run_in_transaction(self.registry, func, **kw)
        except QrmError as error:
            raise click.ClickException(error.message) from None


@click.group()
@click.option("-c", "--config", "config_uri", default=lambda: os.environ.get(
    "QRM_CONFIG", "development.ini"), show_default="development.ini or $QRM_CONFIG",
    help="The ini file (PasteDeploy) to read.")
@click.pass_context
def main(ctx: click.Context, config_uri: str) -> None:
    """QRM Cloud administration."""
    if not pathlib.Path(config_uri).exists():
        raise click.ClickException(f"no such configuration file: {config_uri}")
    setup_logging(config_uri)
    ctx.obj = Context(config_uri)


# -- database --------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The database schema."""


def _alembic(ctx: Context) -> Any:
    from alembic.config import Config

    return Config(ctx.config_uri)


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(ctx: Context, revision: str) -> None:
    """Upgrade the schema to REVISION (default: the newest)."""
    from alembic import command

    settings_url = ctx.settings.get("sqlalchemy.url", "")
    if settings_url.startswith("sqlite:///") and not os.environ.get("QRM_DATABASE_URL"):
        pathlib.Path(settings_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True)
    command.upgrade(_alembic(ctx), revision)
    click.echo(f"database upgraded to {revision}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
def db_downgrade(ctx: Context, revision: str) -> None:
    """Downgrade the schema to REVISION (``base`` removes everything)."""
    from alembic import command

    command.downgrade(_alembic(ctx), revision)
    click.echo(f"database downgraded to {revision}")


# -- demo ------------------------------------------------------------------------------------
@main.command()
@click.pass_obj
def demo(ctx: Context) -> None:
    """Load the demo datacenter and cloud (once) and print fresh demo credentials."""
    from engine.cloud.demo import load_demo

    credentials = ctx.run(load_demo)
    click.echo("Demo accounts (passwords are new at every start unless QRM_DEMO_PASSWORD "
               "is set):")
    click.echo(f"  admin console  user admin  password {credentials['admin']}")
    click.echo(f"  cloud portal   user demo   password {credentials['demo']}")


# -- admins ----------------------------------------------------------------------------------
@main.group()
def admin() -> None:
    """Admin accounts."""


@admin.command("create")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 8 characters.")
@click.option("--email", default="", help="E-mail address.")
@click.pass_obj
def admin_create(ctx: Context, name: str, password: str, email: str) -> None:
    """Create admin NAME."""
    from engine.accounts.services import AccountService

    ctx.run(lambda request: request.find_service(AccountService).create_admin(
        name, password, email=email, actor=Actor.system("cli")))
    click.echo(f"admin {name} created")


# -- plugins ---------------------------------------------------------------------------------
@main.group()
def plugins() -> None:
    """Plugins: list them, enable, start, stop, disable."""


@plugins.command("list")
@click.pass_obj
def plugins_list(ctx: Context) -> None:
    """List the discovered plugins and their states."""
    from engine.plugins.manager import PluginService

    for plugin in ctx.run(lambda request: request.find_service(PluginService).list()):
        click.echo(f"{plugin['name']:<20} {plugin['state']:<10} {plugin['type']:<15} "
                   f"{plugin['description']}")


def _plugin_action(action: str) -> Any:
    @click.argument("name")
    @click.pass_obj
    def command(ctx: Context, name: str) -> None:
        from engine.plugins.manager import PluginService

        state = ctx.run(lambda request: request.find_service(PluginService).act(
            name, action, actor=Actor.system("cli")))
        click.echo(f"plugin {name} is {state.value}")

    command.__doc__ = f"{action.capitalize()} plugin NAME."
    return command


for _action in ("enable", "start", "stop", "disable"):
    plugins.command(_action)(_plugin_action(_action))


# -- the command queue -----------------------------------------------------------------------
@main.group()
def commands() -> None:
    """The remote command queue: list commands, re-run a failed one."""


@commands.command("list")
@click.option("--state", type=click.Choice(["queued", "running", "failed", "done"]),
              help="Only commands in this state.")
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
@click.pass_obj
def commands_list(ctx: Context, state: str | None, limit: int) -> None:
    """List commands: id, state, target, argv, attempts, exit code, when."""
    import shlex

    from engine.commands.models import CommandState
    from engine.commands.services import CommandService

    def rows(request: Any) -> list[tuple[str, ...]]:
        found = request.find_service(CommandService).list(
            state=CommandState(state) if state else None, limit=limit)
        return [(str(command.id), command.state.value, _command_target(command),
                 shlex.join(command.argv), f"{command.attempts}/{command.max_attempts}",
                 "-" if command.exit_code is None else str(command.exit_code),
                 _when(command)) for command in found]

    header = ("ID", "STATE", "TARGET", "ARGV", "ATTEMPTS", "EXIT", "WHEN (UTC)")
    table = [header, *ctx.run(rows)]
    if len(table) == 1:
        click.echo("no commands")
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        argv = row[3] if len(row[3]) <= 60 else row[3][:59] + "…"
        cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                 argv.ljust(min(widths[3], 60)), row[4].rjust(widths[4]),
                 row[5].rjust(widths[5]), row[6]]
        click.echo("  ".join(cells).rstrip())


def _when(command: Any) -> str:
    moment = command.finished_at or command.started_at or command.created_at
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def _command_target(command: Any) -> str:
    if command.executor == "local":
        return "local"
    if command.storage_id is not None:
        return f"storage {command.storage_id}"
    return f"resource {command.resource_id}" if command.resource_id is not None else "-"


@commands.command("rerun")
@click.argument("command_id", type=int, metavar="ID")
@click.pass_obj
def commands_rerun(ctx: Context, command_id: int) -> None:
    """Queue failed command ID again, with a fresh set of attempts."""
    from engine.commands.services import CommandService

    ctx.run(lambda request: request.find_service(CommandService).rerun(
        command_id, actor=Actor.system("cli")))
    click.echo(f"command {command_id} queued again")


# -- network boot ----------------------------------------------------------------------------
@main.group()
def boot() -> None:
    """Network boot: DHCP configuration (docs/dhcp.md), the initramfs (docs/boot.md)."""


@boot.command("dhcp-config")
@click.option("--server", type=click.Choice(["dhcpd", "kea", "dnsmasq"]), default=None,
              help="The server's syntax (default: qrm.dhcp.server, else dnsmasq).")
@click.pass_obj
def boot_dhcp_config(ctx: Context, server: str | None) -> None:
    """Print the DHCP configuration the resources and IP groups make."""
    from engine.dhcp.services import DhcpService

    click.echo(ctx.run(lambda request: request.find_service(DhcpService).config_text(server)),
               nl=False)


@boot.command("dhcp-write")
@click.pass_obj
def boot_dhcp_write(ctx: Context) -> None:
    """Write qrm.dhcp.config_path now if it is behind, and reload the server (the
    dhcp.write job, run once)."""
    from engine.dhcp.jobs import write_job
    from engine.dhcp.settings import DhcpSettings

    try:
        settings = DhcpSettings.from_settings(ctx.registry.settings)
    except QrmError as error:
        raise click.ClickException(error.message) from None
    if not settings.writes:
        raise click.ClickException("nothing to write: set qrm.dhcp.server and "
                                   "qrm.dhcp.config_path")
    outcome = ctx.run(write_job)
    click.echo(f"{outcome.path}: " + ("written" if outcome.written else "unchanged"))
    if outcome.reload is not None:
        click.echo("reloaded" if outcome.reload.succeeded else
                   f"reload failed: {outcome.reload.error or outcome.reload.exit_code}")
    if outcome.gave_up:
        raise click.ClickException("the reload hook failed too often for this content")


# -- kernels ------------------------------------------------------------------------------
@main.group()
def kernels() -> None:
    """Kernels that resources network-boot."""


@kernels.command("add")
@click.argument("name")
@click.option("--vmlinuz", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The kernel image.")
@click.option("--initrd", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Its initramfs (see `qrm boot build-initrd`).")
@click.option("--version", "version", default="", help="The kernel's version.")
@click.pass_obj
def kernels_add(ctx: Context, name: str, vmlinuz: str, initrd: str, version: str) -> None:
    """Copy VMLINUZ and INITRD into qrm.boot.kernel_dir and register kernel NAME."""
    from engine.boot.kernels import KernelFileService

    kernel = ctx.run(lambda request: request.find_service(KernelFileService).add(
        name, vmlinuz=pathlib.Path(vmlinuz), initrd=pathlib.Path(initrd), version=version,
        actor=Actor.system("cli")))
    click.echo(f"kernel {name} added ({kernel.vmlinuz_size} + {kernel.initrd_size} bytes)")


@boot.command("build-initrd")
@click.option("--kernel-deb", type=click.Path(exists=True, dir_okay=False),
              help="A kernel package (.deb) whose modules go in.")
@click.option("--modules", type=click.Path(exists=True, file_okay=False),
              help="Or an unpacked modules tree (lib/modules/<version> or above it).")
@click.option("--busybox", default="/bin/busybox", show_default=True,
              help="A static busybox (Debian: busybox-static).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write it.")
def boot_build_initrd(kernel_deb: str | None, modules: str | None, busybox: str,
                      out: str) -> None:
    """Build the small initramfs with busybox, the NIC/disk/NFS modules and the agent."""
    from engine.boot import initrd

    if bool(kernel_deb) == bool(modules):
        raise click.UsageError("give either --kernel-deb or --modules")
    try:
        if kernel_deb:
            order = initrd.build_from_deb(pathlib.Path(kernel_deb), pathlib.Path(out),
                                          busybox=pathlib.Path(busybox))
        else:
            order = initrd.build(initrd.find_modules_dir(pathlib.Path(modules)),
                                 pathlib.Path(out), busybox=pathlib.Path(busybox))
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{out}: {len(order)} modules ({' '.join(order)})")


# -- processes -------------------------------------------------------------------------------
@main.command()
@click.pass_obj
def scheduler(ctx: Context) -> None:
    """Run the job scheduler (the production process; web workers run no jobs)."""
    from engine.scheduler.service import start_scheduler

    running = start_scheduler(ctx.registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo("scheduler running; Ctrl-C stops it")
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    running.shutdown(wait=True)
    click.echo("scheduler stopped")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=lambda: int(os.environ.get("PORT", "6543")), type=int,
              show_default="$PORT or 6543")
@click.pass_obj
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the web faces (and the scheduler, if ``qrm.scheduler = true``)."""
    import waitress

    from engine.scheduler.service import start_scheduler

    config = ctx.make_config()
    app = config.make_wsgi_app()
    running = start_scheduler(config.registry) if as_bool(
        config.get_settings().get("qrm.scheduler")) else None
    click.echo(f"serving on http://{host}:{port}/ (admin console: /admin); Ctrl-C stops")
    try:
        waitress.serve(app, host=host, port=port, threads=8, ident="qrm-cloud")
    except KeyboardInterrupt:
        pass
    finally:
        if running is not None:
            running.shutdown(wait=True)
        click.echo("stopped")


if __name__ == "__main__":
    main()
