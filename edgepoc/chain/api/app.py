"""`make_api`: the node's HTTP routes (client API, explorer, /metrics, /openapi.json) on FastAPI.

Every bad request gets a 4xx with {"error": reason}: malformed JSON or fields (400), unknown
route or object (404), wrong method (405), a body over the cap (413). Query parameters and id
lengths are bounded, so no request makes the node do unbounded work. Routes are plain `def`s:
FastAPI runs them on worker threads, and `NodeView` promises thread-safe calls.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgepoc.chain.api.activity import MAX_BLOCKS, providers_summary
from edgepoc.chain.api.metrics import CONTENT_TYPE, ChainMetrics
from edgepoc.chain.api.view import NodeView
from edgepoc.errors import EdgepocError, InputError

log = logging.getLogger("edgepoc.api")
EXPLORER_DIR = Path(__file__).parent / "explorer"
MAX_BODY = 8 * 1024 * 1024
MAX_SUBMIT_ITEMS = 5000  # signature checks are per item
MAX_STATUS_IDS = 5000
MAX_ID_LEN = 256
MAX_LIST = 1000


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong with the request (or why the node cannot answer it).")


class ModuleIn(BaseModel):
    module: dict[str, Any] = Field(description="{type: module, chain_id, client, wasm (base64), sig}")


class TasksIn(BaseModel):
    tasks: list[dict[str, Any]] = Field(max_length=MAX_SUBMIT_ITEMS,
                                        description="Signed task requests (the chain's wire form), each an object.")


class IdsIn(BaseModel):
    ids: list[Annotated[str, Field(max_length=MAX_ID_LEN)]] = Field(max_length=MAX_STATUS_IDS)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request"},
    404: {"model": ErrorBody, "description": "No such object or route"},
    409: {"model": ErrorBody, "description": "The node refuses the request in its current state"},
    413: {"model": ErrorBody, "description": "Body over the size cap"},
}


class BodyLimit:
    """ASGI middleware: refuse a body over `max_body` bytes (declared or streamed) with 413, unread."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            resp = JSONResponse({"error": f"body: over {self.max_body} bytes (or a bad Content-Length)"}, 413)
            await resp(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, f"body: over {self.max_body} bytes")
            return msg

        await self.app(scope, limited, send)


def _reason(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


def make_api(view: NodeView, metrics: ChainMetrics, max_body: int = MAX_BODY) -> FastAPI:
    """The node's ASGI app over `view` (reads, submit) and `metrics` (/metrics)."""
    app = FastAPI(title="edgepoc node API", version="1", responses=ERRORS, docs_url=None, redoc_url=None,
                  description="Client API of one edgepoc provider node: submit signed tasks, follow them to "
                              "their block, read blocks, contributions, evidence and arbitrations.")
    app.add_middleware(BodyLimit, max_body=max_body)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _reason(exc)}, 400)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    @app.exception_handler(EdgepocError)
    async def _refused(request: Request, exc: EdgepocError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 409)

    def _not_found(what: str) -> HTTPException:
        return HTTPException(404, what)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/explorer/")

    @app.post("/tasks", summary="Submit signed tasks (idempotent: a resubmitted pending task is accepted again)")
    def submit(body: TasksIn) -> dict:
        return view.submit(body.tasks)

    @app.post("/tasks/status", summary="Status of many tasks at once")
    def tasks_status(body: IdsIn) -> dict:
        batched = getattr(view, "tasks", None)  # a few queries for thousands of ids, where the view has it
        return {"tasks": batched(list(body.ids)) if batched else {i: view.task(i) for i in body.ids}}

    @app.get("/tasks/{task_id}", summary="One task: committed (where and when, its latency), pending or unknown")
    def task(task_id: Annotated[str, PathParam(max_length=MAX_ID_LEN)]) -> dict:
        return view.task(task_id)

    @app.post("/modules", summary="Submit a client-signed WebAssembly module transaction (like /tasks: a refused "
                                  "module is answered with accepted=false and the reason)")
    def submit_module(body: ModuleIn) -> dict:
        try:
            return view.submit_module(body.module)
        except InputError as exc:
            return {"module": None, "accepted": False, "error": str(exc)}

    @app.get("/modules/{digest}", summary="A module on chain: its height and exported functions")
    def module(digest: Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}$")]) -> dict:
        found = view.module(digest)
        if found is None:
            raise _not_found(f"module {digest[:16]}")
        return found

    @app.get("/results/{task_id}", summary="The result this provider's worker computed for a task")
    def result(task_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]) -> dict:
        found = view.result(task_id)  # an audit copy's result: <task id>_a1
        if found is None:
            raise _not_found(f"result of {task_id}")
        return found

    @app.get("/blocks", summary="Recent block summaries, newest first")
    def blocks(before: Annotated[int | None, Query(ge=1, le=2**53)] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20,
               with_tasks: Annotated[bool, Query(description="Only blocks that carry tasks")] = False) -> dict:
        return {"blocks": view.blocks(before, limit, with_tasks=with_tasks)}

    @app.get("/blocks/{ref}", summary="One block with its commit and hash (`latest` for the newest)")
    def block(ref: Annotated[str, PathParam(pattern=r"^(latest|[0-9]{1,15})$")]) -> dict:
        doc = view.block(None if ref == "latest" else int(ref))
        if doc is None:
            raise _not_found(f"no block at height {ref}")
        return doc

    @app.get("/contributions", summary="Contribution score, rewards, penalties and proposer share per provider")
    def contributions() -> dict:
        return view.contributions()

    @app.get("/history", summary="Per-block scores, powers, rewards, penalties and backlog, oldest first")
    def history(limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 200) -> dict:
        return {"history": view.history(limit)}

    @app.get("/evidence", summary="Misbehaviour evidence seen or committed")
    def evidence() -> dict:
        return {"evidence": view.evidence()}

    @app.get("/arbitrations", summary="Blocks whose allocation came from the arbiter, newest first")
    def arbitrations(limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
                     before: Annotated[int | None, Query(ge=1, le=2**53, description="Only heights below")] = None) -> dict:
        return {"arbitrations": view.arbitrations(limit, before)}

    @app.get("/activity", summary="The newest blocks in brief (time, tasks, proposer, who signed the commit they "
                                  "carry) and each provider's signatures over them, newest first")
    def activity(limit: Annotated[int, Query(ge=1, le=MAX_BLOCKS)] = 300) -> dict:
        rows = metrics.log.window(view, limit)
        names = [v["name"] for v in view.contributions().get("validators") or [] if isinstance(v, dict)]
        return {"height": rows[0]["height"] if rows else 0, "blocks": rows,
                "providers": providers_summary(rows, names)}

    @app.get("/status", summary="Height, finality, mempool, validators and this node's process")
    def status() -> dict:
        return {"explorer": "/explorer/", **view.status()}

    @app.get("/metrics", summary="Prometheus text format", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def prometheus() -> Response:
        metrics.observe_status(view.status())  # height, mempool, commit age, reachable power: as of this scrape
        metrics.observe_contributions(view.contributions())  # scores, powers, rewards, penalties: committed state
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    app.mount("/explorer", StaticFiles(directory=EXPLORER_DIR, html=True), name="explorer")
    return app
