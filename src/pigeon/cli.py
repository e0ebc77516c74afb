"""The ``pigeon`` command line: run everything, or each part as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
import uvicorn

from pigeon import loop as event_loop
from pigeon import metrics, tracing
from pigeon.api.admin import api_key_json, dead_letter_json
from pigeon.bootstrap import WORKERS, Pigeon, Runner, build, worker_names
from pigeon.children import (
    WorkerProcesses,
    child_environment,
    lower_priority,
    stop_with_parent,
)
from pigeon.config import Settings, load_settings
from pigeon.domain.events import format_time
from pigeon.domain.notification import Account
from pigeon.errors import (
    ConfigurationError,
    NotFoundError,
    PigeonError,
    StoreUnavailable,
)
from pigeon.logs import configure_logging
from pigeon.metrics import status as metrics_status
from pigeon.metrics.endpoint import WorkerMetricsServer
from pigeon.prefork import PreForked, freeze_heap
from pigeon.sandbox.faults import FaultConfig, parse_fault_config
from pigeon.sandbox.server import SandboxServer
from pigeon.store import migrate
from pigeon.store.api_keys import ApiKeyView
from pigeon.store.dead_letters import DeadLetterView
from pigeon.store.engine import DatabaseUrl
from pigeon.store.sql_store import MAX_LIMIT, UNSET, SqlStore, Unset

log = logging.getLogger("pigeon")
T = TypeVar("T")

app = typer.Typer(
    help="Pigeon: event-driven SMS notifications. 'pigeon run' starts everything.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
accounts_app = typer.Typer(help="Manage accounts' limits.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
db_app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
dlq_app = typer.Typer(
    help="Inspect and replay dead letters (messages Pigeon gave up on).", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")

MigrateOption = Annotated[
    bool | None,
    typer.Option(
        "--migrate/--no-migrate",
        help="Bring the database schema up to date on start (PIGEON_AUTO_MIGRATE).",
    ),
]

DEV_ACCOUNT = "dev"


def _settings(**overrides: Any) -> Settings:
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.log_level, settings.log_format)
    return settings


#: how long a thread may hold the GIL while another waits (Python's default: 5 ms)
GIL_SWITCH_SECONDS = 0.0005


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on uvloop when available; our errors become one line and exit 2."""
    # The store's writer thread holds the database's write lock while it runs; with
    # the default 5 ms GIL switch interval it would wait for the event loop that
    # long, with every other process queued behind the lock.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    try:
        event_loop.run(main())
    except PigeonError as exc:
        typer.echo(f"pigeon: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.filename is None:
            raise
        # the data folder or the SQLite file could not be made (a file in the way, no access)
        typer.echo(
            f"pigeon: error: PIGEON_DATA_DIR / PIGEON_DATABASE_URL: cannot create "
            f"{exc.filename}: {exc.strerror}",
            err=True,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


async def _until_signalled(
    *tasks: Awaitable[Any], on_stop: Callable[[], None] = lambda: None, grace: float = 10.0
) -> None:
    """Run ``tasks`` until SIGINT/SIGTERM or one of them ends; then stop gracefully.

    ``on_stop`` asks the tasks to finish what they hold; after ``grace`` seconds
    they are cancelled (unsettled bus batches are simply delivered again later).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = [asyncio.ensure_future(t) for t in tasks]
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
    on_stop()
    stopper.cancel()
    if running:
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _serve_runners(runners: list[Runner]) -> None:
    await asyncio.gather(*(r.run() for r in runners))


def _stop_all(server: uvicorn.Server | None, runners: list[Runner]) -> Callable[[], None]:
    def stop() -> None:
        if server is not None:
            server.should_exit = True
            if isinstance(server, _Server):
                for on_exit in server.on_exit:
                    on_exit()  # open live streams end, so the server's shutdown can finish
        for runner in runners:
            runner.request_stop()

    return stop


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the CLI owns signals."""

    def __init__(self, config: uvicorn.Config, on_exit: list[Callable[[], None]]) -> None:
        super().__init__(config)
        #: called when the server is asked to stop
        self.on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listen(host: str, port: int, setting: str) -> socket.socket:
    """A listening socket, or one clear line naming the setting when the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            setting, f"cannot listen on {host}:{port}: {exc.strerror}"
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _start_sandbox(sandbox: SandboxServer, host: str, port: int) -> None:
    try:
        await sandbox.start()
    except OSError as exc:
        raise ConfigurationError(
            "PIGEON_SANDBOX_PORT", f"cannot listen on {host}:{port}: {exc.strerror}"
        ) from exc


def _api_server(pigeon: Pigeon, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        pigeon.api(),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # PIGEON_ACCESS_LOG has ours (pigeon.logs.AccessLog)
        log_config=None,  # uvicorn's records go to our handler, in PIGEON_LOG_FORMAT
        lifespan="off",
        server_header=False,
        backlog=2048,
        ws="none",  # no WebSocket routes: uvicorn need not load the websockets library
    )
    return _Server(config, on_exit=[pigeon.streams.close])


async def _dev_key(pigeon: Pigeon) -> str:
    """The dev account's key, kept in the data folder so it survives restarts."""
    path = pigeon.settings.data_dir / "dev-api-key"
    if path.exists():
        key = path.read_text().strip()
        if await pigeon.store.authenticate(key) is not None:
            return key
    _, key = await pigeon.store.create_api_key(DEV_ACCOUNT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


@app.command()
def run(
    port: Annotated[int | None, typer.Option(help="API port (PIGEON_API_PORT).")] = None,
    sandbox_port: Annotated[
        int | None, typer.Option(help="Sandbox port (PIGEON_SANDBOX_PORT).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (PIGEON_DATA_DIR).")] = None,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate/--no-migrate",
            help="Bring the database schema up to date on start (default: yes).",
        ),
    ] = True,
) -> None:
    """Run everything with one command: API, workers and the sandbox SMS provider.

    The workers run together in one child process forked from this one, the
    sandbox in another (PIGEON_RUN_WORKER_PROCESSES=false: all in this one
    process); Ctrl-C stops them all.
    """
    settings = _settings(
        api_port=port, sandbox_port=sandbox_port, data_dir=data_dir, auto_migrate=migrate or None
    )
    if "sms_provider_url" not in settings.model_fields_set:  # default: our own sandbox
        settings = settings.model_copy(
            update={"sms_provider_url": f"http://{settings.sandbox_host}:{settings.sandbox_port}"}
        )
    # one /metrics for every process of the run: each writes its values into files of
    # one folder, and the API sums them up when scraped (prometheus-client's multiprocess
    # mode); made before the fork, so that the workers' child is told where it is
    metrics_dir = (
        tempfile.mkdtemp(prefix="pigeon-metrics-") if settings.run_worker_processes else ""
    )
    settings = settings.model_copy(update={"metrics_dir": metrics_dir})

    # forked before any thread or event loop starts, so that it shares this process's
    # loaded code; it waits until the store and the bus are open (pigeon.prefork)
    held = (
        PreForked.fork(["worker", *worker_names(settings)], child_environment(settings))
        if settings.run_worker_processes
        else None
    )
    # migrating loads Alembic (~11 MB) for good: a start that must migrate does it in
    # a child of its own ('pigeon db upgrade'), which takes that memory with it
    migrator = (
        PreForked.fork(["db", "upgrade"], child_environment(settings))
        if held is not None and settings.auto_migrate
        else None
    )

    async def main() -> None:
        # after the fork: the workers' child configures its own (as 'pigeon worker')
        tracing.configure("pigeon-api" if settings.run_worker_processes else "pigeon")
        _enable_metrics(settings)  # before anything is built: components bind their metrics
        api_socket = _listen(settings.api_host, settings.api_port, "PIGEON_API_PORT")
        sandbox_socket = _listen(
            settings.sandbox_host, settings.sandbox_port, "PIGEON_SANDBOX_PORT"
        )
        # with worker processes the sandbox is a child too (it stands for Twilio and
        # must not take the API's core); the parent keeps its socket for restarts
        sandbox = (
            None
            if settings.run_worker_processes
            else SandboxServer(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token,
                sock=sandbox_socket,
            )
        )
        pigeon = build(settings)  # checks the settings; creates nothing yet
        # both ports are taken before the store is opened: a start that fails on a
        # busy port leaves no new database or data folder behind
        if migrator is not None:
            await _migrate_apart(migrator, settings.database)
        if sandbox is not None:
            await sandbox.start()
        try:
            await pigeon.start()
            await pigeon.store.warm_up()
            key = await _dev_key(pigeon)
            runners: list[Runner] = (
                [
                    WorkerProcesses(
                        pigeon.all_workers(),
                        settings,
                        sandbox_socket=sandbox_socket,
                        forked=held.release() if held is not None else None,
                    )
                ]
                if settings.run_worker_processes
                else [r for name in pigeon.all_workers() for r in await pigeon.workers(name)]
            )
            server = _api_server(pigeon, settings.api_host, settings.api_port)
            freeze_heap()  # what serving needs is built: the collector stops walking it
            api_url = f"http://{settings.api_host}:{settings.api_port}"
            sandbox_url = f"http://{settings.sandbox_host}:{settings.sandbox_port}"
            typer.echo(
                f"Pigeon is running.\n"
                f"  API:          {api_url}   (docs: {api_url}/docs)\n"
                f"  Console:      {api_url}/console   (metrics: {api_url}/metrics)\n"
                f"  Sandbox SMS:  {sandbox_url}/sandbox/messages\n"
                f"  Data:         {settings.data_dir.resolve()}\n"
                f"  Dev API key:  {key}\n\n"
                f"Try:\n  curl -s -X POST {api_url}/v1/notifications \\\n"
                f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
                f'    -d \'{{"channel": "sms", "to": "+14155550123", '
                f'"body": "Hello from Pigeon"}}\'\n'
                f"Press Ctrl-C to stop."
            )
            await _until_signalled(
                server.serve([api_socket]),
                _serve_runners(runners),
                on_stop=_stop_all(server, runners),
            )
        finally:
            if sandbox is not None:
                await sandbox.stop()
            sandbox_socket.close()
            await pigeon.stop()

    try:
        _run(main)
    finally:
        for child in (held, migrator):  # not released: the start failed before them
            if child is not None:
                child.cancel_and_reap()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _enable_metrics(settings: Settings) -> None:
    """Record metrics in this process: into the folder of a ``pigeon run``, if a part of one."""
    metrics.enable(Path(settings.metrics_dir) if settings.metrics_dir else None)


async def _migrate_apart(migrator: PreForked, database: DatabaseUrl) -> None:
    """Bring the schema up to date in the held ``pigeon db upgrade`` child, if it is behind."""
    try:
        current = await asyncio.to_thread(migrate.current_revision, database)
    except PigeonError:  # the store does not answer: pigeon.start() names the setting
        current = migrate.head_revision()
    if current == migrate.head_revision():
        migrator.cancel()
        await migrator.child.wait()
        return
    if await migrator.release().wait() != 0:
        raise typer.Exit(2)  # it printed the one line that says why


@app.command()
def api(
    port: Annotated[int | None, typer.Option(help="Port (PIGEON_API_PORT).")] = None,
    migrate: MigrateOption = None,
) -> None:
    """Run the HTTP API alone (workers run as 'pigeon worker NAME')."""
    settings = _settings(api_port=port, auto_migrate=migrate)

    async def main() -> None:
        tracing.configure("pigeon-api")  # opt-in by OTEL_* (see docs/tracing.md)
        _enable_metrics(settings)  # GET /metrics; before anything is built
        api_socket = _listen(settings.api_host, settings.api_port, "PIGEON_API_PORT")
        pigeon = build(settings)
        await pigeon.start()
        try:
            await pigeon.store.warm_up()
            server = _api_server(pigeon, settings.api_host, settings.api_port)
            freeze_heap()  # what serving needs is built: the collector stops walking it
            log.info("API listening on http://%s:%d", settings.api_host, settings.api_port)
            await _until_signalled(server.serve([api_socket]), on_stop=_stop_all(server, []))
        finally:
            await pigeon.stop()

    _run(main)


@app.command()
def worker(
    names: Annotated[
        list[str],
        typer.Argument(
            help=f"One or more of: {', '.join(WORKERS)} (several share one process).",
            show_default=False,
        ),
    ],
    migrate: MigrateOption = None,
) -> None:
    """Run workers: sms-sender, usage-meter, status-projector or outbox-relay (Kafka).

    Name several to run them in one process (``pigeon run`` does: its workers
    share one child process, one connection and one group commit).
    """
    unknown = [name for name in names if name not in WORKERS]
    if unknown or len(set(names)) != len(names):
        problem = f"unknown worker {unknown[0]!r}" if unknown else "a worker is named twice"
        typer.echo(f"pigeon: error: {problem}; choose from {', '.join(WORKERS)}", err=True)
        raise typer.Exit(2)
    settings = _settings(auto_migrate=migrate)
    stop_with_parent(settings.run_parent_pid)  # a child of 'pigeon run' ends with it
    lower_priority(settings.worker_nice)

    async def main() -> None:
        tracing.configure(f"pigeon-{names[0]}" if len(names) == 1 else "pigeon-workers")
        # a child of 'pigeon run' writes into the run's folder (its API serves them); else
        # PIGEON_METRICS_PORT: this process serves its own, bound before anything starts
        if settings.metrics_dir or settings.metrics_port:
            _enable_metrics(settings)
        served = (
            WorkerMetricsServer.start(settings.metrics_host, settings.metrics_port)
            if settings.metrics_port and not settings.metrics_dir
            else None
        )
        try:
            pigeon = build(settings)
            await pigeon.start()
            try:
                runners = [r for name in names for r in await pigeon.workers(name)]
                freeze_heap()  # the workers are built: the collector stops walking them
                log.info("worker %s started", ", ".join(names))
                await _until_signalled(_serve_runners(runners), on_stop=_stop_all(None, runners))
            finally:
                await pigeon.stop()
                tracing.disable()  # flushes spans: a child of 'pigeon run' ends by os._exit
        finally:
            if served is not None:
                await asyncio.to_thread(served.stop)

    _run(main)


@app.command()
def sandbox(  # noqa: PLR0917 - each CLI option is a parameter (typer)
    port: Annotated[int | None, typer.Option(help="Port (PIGEON_SANDBOX_PORT).")] = None,
    latency_ms: Annotated[float, typer.Option(help="Added latency per send.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of sends answered 500.")] = 0.0,
    rate_429: Annotated[float, typer.Option(help="Share of sends answered 429.")] = 0.0,
    down: Annotated[bool, typer.Option(help="Answer every send with 503.")] = False,
    faults_json: Annotated[
        str | None,
        typer.Option(
            "--faults",
            help='Any fault settings as JSON, e.g. \'{"timeout_rate": 0.1, "error_codes": '
            '{"20500": 0.1}}\' (see docs/sandbox.md); the options above override it.',
        ),
    ] = None,
    listen_fd: Annotated[
        int | None,
        typer.Option(hidden=True, help="Serve on this inherited listening socket ('pigeon run')."),
    ] = None,
) -> None:
    """Run the Twilio-compatible sandbox SMS provider (faults changeable at run time)."""
    settings = _settings(sandbox_port=port)
    stop_with_parent(settings.run_parent_pid)  # a child of 'pigeon run' ends with it
    try:
        base = parse_fault_config(faults_json) if faults_json is not None else FaultConfig()
    except PigeonError as exc:
        typer.echo(f"pigeon: error: --faults: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        overrides: dict[str, object] = {}
        for name, value, default in (
            ("latency_ms", latency_ms, 0.0),
            ("error_rate", error_rate, 0.0),
            ("rate_429", rate_429, 0.0),
            ("down", down, False),
        ):
            if value != default:
                overrides[name] = value
        faults = base.updated(overrides)
    except PigeonError as exc:
        typer.echo(f"pigeon: error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        server = SandboxServer(
            host=settings.sandbox_host,
            port=settings.sandbox_port,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            faults=faults,
            sock=socket.socket(fileno=listen_fd) if listen_fd is not None else None,
        )
        await _start_sandbox(server, settings.sandbox_host, settings.sandbox_port)
        if listen_fd is None:  # under 'pigeon run' the parent has said where it is
            typer.echo(
                f"Sandbox SMS provider on {server.url} (inbox: {server.url}/sandbox/messages)"
            )
        try:
            await _until_signalled()
        finally:
            await server.stop()

    _run(main)


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="Account name; created if new.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin key: may also use /v1/admin routes.")
    ] = False,
) -> None:
    """Create an API key for an account and print it (it is shown only once)."""

    async def work(store: SqlStore) -> None:
        acc, key = await store.create_api_key(account, admin=admin)
        kind = "admin api key" if admin else "api key"
        typer.echo(f"account: {acc.name} ({acc.id})\n{kind}: {key}")

    _with_store(work)


@keys_app.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List API keys, oldest first: id, account, first characters, kind, state (never the key)."""

    async def work(store: SqlStore) -> None:
        def line(key: ApiKeyView) -> str:
            state = f"revoked {format_time(key.revoked_at)}" if key.revoked_at else "active"
            kind = "admin" if key.is_admin else "api"
            return (
                f"{key.id}  {key.account_name:20}  {key.prefix}…  {kind:5}  "
                f"created {format_time(key.created_at)}  {state}"
            )

        empty = "no API keys" + (f" for account {account!r}" if account else "")
        _print_rows(await store.api_keys(account), as_json, api_key_json, line, empty)

    _with_store(work)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke an API key: every API process refuses it within a second."""

    async def work(store: SqlStore) -> None:
        key = await store.revoke_api_key(key_id)
        typer.echo(f"revoked {key.id} ({key.prefix}…) of account {key.account_name}")

    _with_store(work)


@keys_app.command("rotate")
def keys_rotate(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Replace an API key by a new one of the same account and kind, and revoke the old one.

    The new key is printed once; deploy it before running this where a gap matters
    (or create a second key first, switch to it, then revoke the first).
    """

    async def work(store: SqlStore) -> None:
        old, key = await store.rotate_api_key(key_id)
        kind = "admin api key" if old.is_admin else "api key"
        typer.echo(
            f"revoked {old.id} ({old.prefix}…) of account {old.account_name}\nnew {kind}: {key}"
        )

    _with_store(work)


def _limit(value: str | None, option: str) -> int | Unset | None:
    """An option of ``accounts set-limits``: a whole number, ``none`` (no limit) or absent."""
    if value is None:
        return UNSET
    if value.strip().lower() in ("none", "off", "unlimited"):
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise typer.BadParameter(
            f"a whole number from 1 to {MAX_LIMIT:,}, or 'none' to remove the limit",
            param_hint=option,
        )
    return int(value)


def _limits_line(account: Account) -> str:
    limits = account.limits
    rate = (
        f"{limits.rate_per_second} requests/s (burst {limits.burst})"
        if limits is not None and limits.rate_per_second
        else "none"
    )
    quota = (
        f"{limits.monthly_segment_quota:,} segments/month"
        if limits is not None and limits.monthly_segment_quota is not None
        else "none"
    )
    return f"account: {account.name} ({account.id})\nrate limit: {rate}\nmonthly quota: {quota}"


@accounts_app.command("set-limits")
def accounts_set_limits(
    account: Annotated[str, typer.Argument(help="The account's name.")],
    rate: Annotated[
        str | None, typer.Option(help="Requests per second (every /v1 route), or 'none'.")
    ] = None,
    burst: Annotated[
        str | None,
        typer.Option(help="Requests allowed at once after a quiet spell (default: the rate)."),
    ] = None,
    monthly_segments: Annotated[
        str | None, typer.Option(help="SMS segments per calendar month (UTC), or 'none'.")
    ] = None,
) -> None:
    """Set an account's request rate limit and monthly segment quota; every API process
    applies them within a second. Options not given keep their value."""
    changes = {
        "rate_per_second": _limit(rate, "--rate"),
        "rate_burst": _limit(burst, "--burst"),
        "monthly_segment_quota": _limit(monthly_segments, "--monthly-segments"),
    }

    async def work(store: SqlStore) -> None:
        typer.echo(_limits_line(await store.set_limits(account, **changes)))

    _with_store(work)


@accounts_app.command("show")
def accounts_show(account: Annotated[str, typer.Argument(help="The account's name.")]) -> None:
    """Show an account's limits."""

    async def work(store: SqlStore) -> None:
        typer.echo(_limits_line(await store.account_named(account)))

    _with_store(work)


def _print_rows(
    rows: Sequence[T],
    as_json: bool,
    to_json: Callable[[T], dict[str, Any]],
    line: Callable[[T], str],
    empty: str,
) -> None:
    """A listing command's output: JSON lines, or one line per row (``empty`` if none)."""
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(to_json(row)).decode())
    elif not rows:
        typer.echo(empty)
    else:
        for row in rows:
            typer.echo(line(row))


def _with_store(work: Callable[[SqlStore], Awaitable[None]]) -> None:
    """Run an operator command against the configured store (the bus is not needed)."""
    settings = _settings()

    async def main() -> None:
        pigeon = build(settings)
        if pigeon.settings.uses_kafka:  # events go to the outbox: Kafka itself is not needed
            await pigeon.store.start()
        else:  # the embedded log needs the bus's topic partition counts
            await pigeon.start()
        try:
            await work(pigeon.store)
        finally:
            if pigeon.settings.uses_kafka:
                await pigeon.store.stop()
            else:
                await pigeon.stop()

    _run(main)


def _since(value: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time or date, or an age such as 30m, 2h, 7d."""
    if value is None:
        return None
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2026-11-26T10:00:00Z) "
            "nor an age such as 30m, 2h or 7d",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


SinceOption = Annotated[
    str | None,
    typer.Option(help="Only dead letters since: ISO 8601 (2026-11-26T10:00Z) or an age (2h, 7d)."),
]


@dlq_app.command("list")
def dlq_list(
    since: SinceOption = None,
    include_replayed: Annotated[
        bool, typer.Option("--all", help="Include dead letters already replayed.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List dead letters, oldest first (not yet replayed, unless --all)."""
    moment = _since(since)

    async def work(store: SqlStore) -> None:
        letters = await store.dead_letters(
            since=moment, include_replayed=include_replayed, limit=limit
        )

        def line(letter: DeadLetterView) -> str:
            state = "replayed" if letter.replayed_at else "dead"
            return (
                f"{letter.id}  {format_time(letter.dead_at)}  {state:8}  "
                f"{letter.notification_id or '-':30}  {letter.reason}"
            )

        _print_rows(letters, as_json, dead_letter_json, line, "no dead letters")

    _with_store(work)


@dlq_app.command("show")
def dlq_show(dead_letter_id: Annotated[str, typer.Argument(help="The dead letter's id.")]) -> None:
    """Show one dead letter with its reason, last error and payload."""

    async def work(store: SqlStore) -> None:
        letter = await store.dead_letter(dead_letter_id)
        if letter is None:
            raise NotFoundError(f"no dead letter {dead_letter_id!r}")
        payload = dead_letter_json(letter, payload=True)
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())

    _with_store(work)


@dlq_app.command("replay")
def dlq_replay(
    dead_letter_id: Annotated[
        str | None, typer.Argument(help="The dead letter to replay (or use --all).")
    ] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Replay every dead letter not replayed yet.")
    ] = False,
    since: SinceOption = None,
) -> None:
    """Send dead-lettered notifications through the pipeline again, with fresh retries."""
    if (dead_letter_id is None) == (not replay_all):
        typer.echo("pigeon: error: give either a dead letter id or --all", err=True)
        raise typer.Exit(2)
    if since is not None and not replay_all:
        typer.echo("pigeon: error: --since goes with --all", err=True)
        raise typer.Exit(2)
    moment = _since(since)

    async def work(store: SqlStore) -> None:
        if dead_letter_id is not None:
            notification_id = await store.replay_dead_letter(dead_letter_id)
            typer.echo(f"replayed {dead_letter_id}: notification {notification_id} is queued")
            return
        report = await store.replay_dead_letters(moment)
        for letter_id, notification_id in report.replayed:
            typer.echo(f"replayed {letter_id}: notification {notification_id} is queued")
        for letter_id, why in report.skipped:
            typer.echo(f"skipped  {letter_id}: {why}")
        typer.echo(f"{len(report.replayed)} replayed, {len(report.skipped)} skipped")

    _with_store(work)


def _on_database(action: Callable[[DatabaseUrl], T]) -> tuple[DatabaseUrl, T]:
    """Run a schema command; a database that does not answer names its setting."""
    database = _settings().database
    try:
        return database, action(database)
    except StoreUnavailable as exc:  # the URL is the first thing to check
        typer.echo(f"pigeon: error: PIGEON_DATABASE_URL: {exc}", err=True)
        raise typer.Exit(2) from None
    except PigeonError as exc:
        typer.echo(f"pigeon: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # the SQLite file's folder could not be made
        typer.echo(f"pigeon: error: PIGEON_DATABASE_URL: {exc.strerror}: {exc.filename}", err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (PIGEON_DATABASE_URL) to this Pigeon's newest schema revision."""
    database, (before, after) = _on_database(migrate.upgrade)
    if before == after:
        typer.echo(f"{database}: already at revision {after}")
    else:
        typer.echo(f"{database}: upgraded from {before or 'an empty schema'} to revision {after}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is up to date."""
    database, current = _on_database(migrate.current_revision)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind; run 'pigeon db upgrade' to reach {head}"
    typer.echo(f"{database}: revision {current or 'none'} ({state})")
    if current != head:
        raise typer.Exit(1)


#: 'pigeon status' on an endpoint nobody scraped before: the interval of its own two scrapes
RATE_SAMPLE_SECONDS = 3.0


@app.command()
def status(
    url: Annotated[
        str | None,
        typer.Option(
            help="A Pigeon API's metrics endpoint (PIGEON_METRICS_URL); default: this "
            "machine's, http://PIGEON_API_HOST:PIGEON_API_PORT/metrics ('pigeon run').",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The summary as one JSON object.")
    ] = False,
) -> None:
    """One screen: consumer lag, circuit breakers, dead letters waiting, the last minute's rates."""
    settings = _settings(metrics_url=url)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per scrape on the screen
    target = settings.status_metrics_url
    summary = metrics_status.read(target)
    if not summary.window_seconds:
        # nothing scraped the endpoint before: its rates need a second look (scenario time)
        time.sleep(RATE_SAMPLE_SECONDS)
        summary = metrics_status.read(target)
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
    else:
        typer.echo(metrics_status.render(summary, target))


def _click_error(name: str) -> type[Exception]:
    """Click's exception class ``name`` (typer >= 0.20 carries its own copy of click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_UsageError = _click_error("UsageError")
_ClickException = _click_error("ClickException")


def _one_line(exc: Exception) -> str:
    format_message: Callable[[], str] = getattr(exc, "format_message", lambda: str(exc))
    return " ".join(format_message().split())


def main() -> None:
    """Console-script entry point: every mistake is one ``pigeon: error:`` line and exit 2."""
    try:
        # not standalone: click would print a usage block and a boxed error instead of a line
        code = app(standalone_mode=False)
    except PigeonError as exc:  # settings errors raised before the loop starts
        typer.echo(f"pigeon: error: {exc}", err=True)
        sys.exit(2)
    except _UsageError as exc:
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "pigeon"
        typer.echo(f"pigeon: error: {_one_line(exc)} (see '{command} --help')", err=True)
        sys.exit(2)
    except _ClickException as exc:
        typer.echo(f"pigeon: error: {_one_line(exc)}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 1)))
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
