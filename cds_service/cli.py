"""The `cds-service` command: `serve` runs the HTTP service, `evaluate` answers one hook request,
`db upgrade` migrates the audit database, `report` summarises cards shown and their feedback,
`codes` lists every code in the value sets with how it was verified."""

import argparse
import asyncio
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_settings import SettingsError

from cds_service.contract import HOOK_SERVICES
from cds_service.errors import BadRequest, CdsError, ConfigurationError
from cds_service.evaluation import evaluate, find_service, parse_json_object, response_bytes
from cds_service.gathering import Fetcher, complete_prefetch
from cds_service.knowledge import Knowledge, KnowledgeError, load_knowledge
from cds_service.limits import too_large
from cds_service.logs import configure_logging
from cds_service.protocol import ErrorBody
from cds_service.services import ServiceDefinition, service_definitions
from cds_service.settings import Settings, get_settings, unknown_setting_names
from cds_service.valueset import VERIFICATION_STATUSES


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from low to high (or more, with no high). Unchecked, --port 99999 bound port 34463
    (the value wraps at 65536) while the log said 99999, and --workers 0 ran one worker."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}" if high is not None
                                             else f"{value} is less than {low}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the CDS Hooks HTTP service")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=_bounded_int(0, 65535), default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--workers", type=_bounded_int(1), default=1, help="worker processes (default 1)")
    ev = sub.add_parser("evaluate", help="answer hook requests (JSON files, or - for stdin)")
    ev.add_argument("request", nargs="+",
                    help="path to a hook request JSON file, or - for stdin; given several, one answer per line (JSON Lines), in order")
    ev.add_argument("--service", help="service id (default: chosen from the request's hook)")
    db = sub.add_parser("db", help="manage the audit and feedback database")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply all schema migrations")
    report = sub.add_parser("report", help="cards shown, accepted and overridden per service and variant")
    report.add_argument("--since", type=date.fromisoformat, help="first day included (YYYY-MM-DD, UTC)")
    report.add_argument("--until", type=date.fromisoformat, help="last day included (YYYY-MM-DD, UTC)")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    codes = sub.add_parser("codes", help="every code in the value sets (cards/valuesets) with how it was verified")
    codes.add_argument("--unverified", action="store_true", help="only codes still to check in a terminology server")
    codes.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _serve(host: str, port: int, workers: int) -> int:
    import uvicorn

    from cds_service.auth import Authenticator  # JOSE and the token ledger: not needed by evaluate

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    load_knowledge(settings.cards_dir)  # fail fast, naming the file, before any worker starts
    problems = Authenticator(settings).jwks_file_problems()
    if problems:  # a wrong path would otherwise surface only as a 401 on every call
        raise ConfigurationError("CDS_TRUSTED_ISSUERS " + "; ".join(problems))
    _check_storage(settings)
    problem = _cannot_listen(host, port)
    if problem:
        print(f"cds-service: could not listen on {host}:{port}: {problem}", file=sys.stderr)
        return 5
    try:
        uvicorn.run(
            "cds_service.app:serve_app", factory=True, host=host, port=port, workers=workers,
            log_level=settings.log_level.lower(), access_log=False, log_config=None,
        )
    except SystemExit as exc:  # uvicorn's 3 (it could not start) is our knowledge error's code
        if exc.code == 3:
            print("cds-service: the server could not start (see the log lines above)", file=sys.stderr)
            return 5
        raise
    return 0


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the address cannot be listened on (taken, unknown host), found before any worker starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
            probe.bind(infos[0][4])
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _check_storage(settings: Settings) -> None:
    """What every worker's app would fail on, found once before any starts: under --workers N,
    uvicorn restarts a worker that fails to start, forever, and the service never stops. No
    connection is made (a database that is down does not stop the service)."""
    from cds_service.audit import key_file
    from cds_service.storage import create_db_engine, sqlite_file

    try:
        engine = create_db_engine(settings)
        file = sqlite_file(engine.url)
        engine.dispose()
        if settings.patient_hash_key is None:
            key_file(settings.data_dir)
    except OSError as exc:
        raise ConfigurationError(f"CDS_DATA_DIR: {exc.strerror or type(exc).__name__}: {exc.filename or settings.data_dir}") \
            from None
    # an SQLite file or folder that cannot be written (a read-only mount, another owner) is no outage
    # to wait out: every audit record and feedback would be lost while /healthz said ok
    setting = "CDS_DATA_DIR" if settings.database_url is None else "CDS_DATABASE_URL"
    for path in (Path(file), Path(file).parent) if file is not None else ():
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigurationError(f"{setting}: not writable (SQLite writes the database and its journal there): {path}")


def _evaluate(paths: list[str], service_id: str | None) -> int:
    """Answer each request in turn with one loaded knowledge: one file prints its answer indented,
    several print one line each (a day's saved requests replayed after a knowledge change)."""
    settings = get_settings()
    knowledge = load_knowledge(settings.cards_dir)
    services = service_definitions(knowledge, settings.prefetch_date_tokens)
    status = 0
    for path in paths:
        try:
            body = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            if len(paths) == 1:
                raise
            # one line per file still: the lines stay in step with the files given
            print(f"cds-service: {exc.strerror}: {exc.filename}", file=sys.stderr)
            sys.stdout.buffer.write(orjson.dumps({"error": "unreadable_file", "message": f"{exc.strerror}: {path}"}) + b"\n")
            status = status or 1
            continue
        answer, refused = _answer(body, service_id, settings, services, knowledge)
        option = orjson.OPT_INDENT_2 if len(paths) == 1 and not refused else 0
        sys.stdout.buffer.write(orjson.dumps(answer, option=option) + b"\n")
        status = 2 if refused else status
    return status


def _answer(
    body: bytes, service_id: str | None, settings: Settings, services: dict[str, ServiceDefinition], knowledge: Knowledge,
) -> tuple[dict[str, Any], bool]:
    """The CDS response to one request, or the error body the server would answer (refused)."""
    try:
        if len(body) > settings.max_body_bytes:  # the server's 413 (CDS_MAX_BODY_BYTES)
            raise too_large(settings.max_body_bytes)
        data = parse_json_object(body)
        if "hook" not in data and isinstance(data.get("request"), dict) and "expect" in data:
            raise BadRequest("This is a scenario file (description, expect, request), not a hook request: run it "
                             "through `python -m tests.fixture_files FILE | cds-service evaluate -`, which also fills in its dates.")
        hook = data.get("hook")
        chosen = service_id or (HOOK_SERVICES.get(hook) if isinstance(hook, str) else None)
        if chosen is None:
            msg = "Field required" if hook is None else f"Not a hook these services answer ({', '.join(HOOK_SERVICES)}); or name one with --service"
            raise BadRequest("The request is not a valid CDS Hooks request.", [{"loc": "hook", "msg": msg}])
        service, now = find_service(services, chosen), datetime.now(settings.zone)
        data = asyncio.run(_complete(settings, service, knowledge, data, now))
        result = evaluate(service, data, knowledge, now)
    except CdsError as exc:
        return orjson.loads(response_bytes(ErrorBody(error=exc.code, message=exc.message, details=exc.details))), True
    return result.response.model_dump(mode="json", exclude_none=True), False


def _db_upgrade() -> int:
    from cds_service.storage import Storage

    storage = Storage(get_settings(), bounded=False)  # a migration may outlast CDS_DB_TIMEOUT
    storage.ensure_schema()
    storage.close()
    print("cds-service: database schema is up to date")
    return 0


def _report(since: date | None, until: date | None, as_json: bool) -> int:
    from cds_service.report import build_report, format_report
    from cds_service.storage import create_db_engine, database_url, sqlite_file

    file = sqlite_file(database_url(get_settings()))
    if file is not None and not Path(file).exists():  # run from the wrong directory: create nothing there
        print(f"cds-service: no database at {file}: nothing was recorded there; set CDS_DATA_DIR (or "
              "CDS_DATABASE_URL) as the service has it", file=sys.stderr)
        return 4
    engine = create_db_engine(get_settings(), bounded=False)  # months of cards may take longer than CDS_DB_TIMEOUT
    try:
        report = build_report(engine, since, until)
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        knowledge = load_knowledge(get_settings().cards_dir)
        labels = {f"{c.system}|{c.code}": c.display for c in knowledge.wording.override_reasons}
        print(format_report(report, labels))
    return 0


def _codes(unverified_only: bool, as_json: bool) -> int:
    knowledge = load_knowledge(get_settings().cards_dir)
    rows = [r for vs in knowledge.valuesets.values() for r in vs.review]
    if unverified_only:
        rows = [r for r in rows if r.status == "unverified"]
    if as_json:
        sys.stdout.buffer.write(orjson.dumps([asdict(r) for r in rows], option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    width = max((len(r.code) for r in rows), default=4)
    for r in rows:
        system = r.system.rsplit("/", 1)[-1]
        print(f"{r.valueset:<26} {system:<10} {r.code:<{width}} {r.status:<15} {r.display}")
    total = sum(len(vs.review) for vs in knowledge.valuesets.values())
    print(f"{len(rows)} of {total} codes shown; statuses: "
          + "; ".join(f"{k}: {v}" for k, v in VERIFICATION_STATUSES.items()))
    return 0


async def _complete(
    settings: Settings, service: ServiceDefinition, knowledge: Knowledge, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The server's gather step; the client opens a connection only if a fetch is needed."""
    fetcher = Fetcher.from_settings(settings)
    async with fetcher.reader.client:
        return await complete_prefetch(service, data, fetcher, knowledge, now.date())


def _settings_problem(exc: ValidationError | SettingsError) -> str:
    """Which CDS_ setting is wrong and why, without echoing its value (it may be a secret)."""
    if isinstance(exc, SettingsError):  # a value that is not the JSON the setting needs
        return str(exc).split(" from source")[0].replace('error parsing value for field "', "CDS_").replace('"', "").upper() \
            + ": not valid JSON (lists and objects are written in JSON)"
    problems = []
    for e in exc.errors():
        name, *inner = map(str, e["loc"])
        where = f" ({' / '.join(inner)})" if inner else ""
        # ", not 5" would tell the length of a secret
        problems.append(f"CDS_{name.upper()}{where}: {re.sub(r', not [^,]*$', '', e['msg'])}")
    return "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "report" and args.since and args.until and args.since > args.until:
        parser.error(f"report: --since {args.since} is after --until {args.until}: the period would be empty")
    if args.command != "serve":  # serve's workers log it, in the log format set
        for name in unknown_setting_names(os.environ):
            print(f"cds-service: warning: {name} names no setting and is ignored: misspelt? (the settings are listed in the README)",
                  file=sys.stderr)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port, args.workers)
        if args.command == "db":
            return _db_upgrade()
        if args.command == "report":
            return _report(args.since, args.until, args.json)
        if args.command == "codes":
            return _codes(args.unverified, args.json)
        return _evaluate(args.request, args.service)
    except ConfigurationError as exc:
        print(f"cds-service: configuration error: {exc}", file=sys.stderr)
        return 2
    except (ValidationError, SettingsError) as exc:
        print(f"cds-service: configuration error: {_settings_problem(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cds-service codes | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except KnowledgeError as exc:
        print(f"cds-service: knowledge error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"cds-service: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not _database_error(exc):
            raise
        from cds_service.storage import describe_db_error  # SQLAlchemy is loaded: it raised

        hint = "" if args.command == "db" else "; is it up and upgraded (cds-service db upgrade)?"
        print(f"cds-service: database error ({describe_db_error(exc)}){hint}", file=sys.stderr)
        return 4


def _database_error(exc: Exception) -> bool:
    """An SQLAlchemy error, told without importing SQLAlchemy (a tenth of a second of every
    `evaluate`): if one was raised, SQLAlchemy is loaded."""
    db = sys.modules.get("sqlalchemy.exc")
    return db is not None and isinstance(exc, db.SQLAlchemyError)


if __name__ == "__main__":  # python -m cds_service.cli, as well as python -m cds_service
    raise SystemExit(main())
