"""The `cds-service` command: `serve` runs the HTTP service, `evaluate` answers one hook request."""

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cds_service.errors import CdsError
from cds_service.evaluation import evaluate, find_service, parse_json_object, response_bytes
from cds_service.knowledge import KnowledgeError, load_knowledge
from cds_service.protocol import ErrorBody
from cds_service.services import service_definitions
from cds_service.settings import get_settings

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
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    ev = sub.add_parser("evaluate", help="answer one hook request (a JSON file, or - for stdin)")
    ev.add_argument("request", help="path to a hook request JSON file, or - for stdin")
    ev.add_argument("--service", help="service id (default: chosen from the request's hook)")
    return parser


def _serve(host: str, port: int, workers: int) -> int:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    load_knowledge(settings.cards_dir)  # fail fast, naming the file, before any worker starts
    uvicorn.run(
        "cds_service.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_level=settings.log_level.lower(), access_log=False,
    )
    return 0


def _evaluate(path: str, service_id: str | None) -> int:
    settings = get_settings()
    knowledge = load_knowledge(settings.cards_dir)
    services = service_definitions(knowledge)
    body = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        data = parse_json_object(body)
        chosen = service_id or HOOK_SERVICES.get(str(data.get("hook")), str(data.get("hook")))
        result = evaluate(find_service(services, chosen), data, knowledge, datetime.now(UTC))
    except CdsError as exc:
        err = ErrorBody(error=exc.code, message=exc.message, details=exc.details)
        sys.stdout.buffer.write(response_bytes(err) + b"\n")
        return 2
    sys.stdout.buffer.write(orjson.dumps(result.response.model_dump(mode="json", exclude_none=True), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port, args.workers)
        return _evaluate(args.request, args.service)
    except KnowledgeError as exc:
        print(f"cds-service: knowledge error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"cds-service: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
