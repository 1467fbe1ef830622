"""The floors for the HTTP benchmark: parse the JSON body, answer {"cards": []}.

`app` runs with Python's default garbage-collector settings; `tuned_app` with the settings the
service applies at start (cds_service.app.tune_gc). Parsing a 91 KB body costs about three times
as much under the defaults (the collector runs several times per parse), so the tuned floor is
the like-for-like one and the default floor flatters the service.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from cds_service.app import tune_gc


async def bare(service_id: str, request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(b'{"cards":[]}', media_type="application/json")


@asynccontextmanager
async def _tuned(_: FastAPI) -> AsyncIterator[None]:
    tune_gc()
    yield


app = FastAPI()
app.post("/cds-services/{service_id}")(bare)
tuned_app = FastAPI(lifespan=_tuned)
tuned_app.post("/cds-services/{service_id}")(bare)
