"""The `cds-service` command: `serve` runs the HTTP service, `evaluate` answers one hook request."""

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from cds_service.errors import CdsError
from cds_service.evaluation import evaluate, find_service, parse_json_object, response_bytes
from cds_service.gathering import Fetcher, complete_prefetch
from cds_service.knowledge import KnowledgeError, load_knowledge
from cds_service.protocol import ErrorBody
from cds_service.services import ServiceDefinition, service_definitions
from cds_service.settings import Settings, get_settings

HOOK_SERVICES = {
    "patient-view": "b12-myalgia-patient-view",
    "order-select": "b12-myalgia-order-select",
    "order-sign": "b12-myalgia-order-sign",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the CDS Hooks HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    ev = sub.add_parser("evaluate", help="answer one hook request (a JSON file, or - for stdin)")
    ev.add_argument("request", help="path to a hook request JSON file, or - for stdin")
    ev.add_argument("--service", help="service id (default: chosen from the request's hook)")
    return parser


def _serve(host: str, port: int) -> int:
    import uvicorn

    from cds_service.app import create_app

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
    return 0


def _evaluate(path: str, service_id: str | None) -> int:
    settings = get_settings()
    knowledge = load_knowledge(settings.cards_dir)
    services = service_definitions(knowledge)
    body = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    try:
        data = parse_json_object(body)
        chosen = service_id or HOOK_SERVICES.get(str(data.get("hook")), str(data.get("hook")))
        service, now = find_service(services, chosen), datetime.now(UTC)
        data = asyncio.run(_complete(settings, service, data, now))
        result = evaluate(service, data, knowledge, now)
    except CdsError as exc:
        err = ErrorBody(error=exc.code, message=exc.message, details=exc.details)
        sys.stdout.buffer.write(response_bytes(err) + b"\n")
        return 2
    sys.stdout.buffer.write(orjson.dumps(result.response.model_dump(mode="json", exclude_none=True), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


async def _complete(settings: Settings, service: ServiceDefinition, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The server's gather step; the client opens a connection only if a fetch is needed."""
    fetcher = Fetcher.from_settings(settings)
    async with fetcher.reader.client:
        return await complete_prefetch(service, data, fetcher, now.date())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        return _evaluate(args.request, args.service)
    except KnowledgeError as exc:
        print(f"cds-service: knowledge error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"cds-service: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
