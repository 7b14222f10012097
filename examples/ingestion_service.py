"""A small ingestion service behind GuardMiddleware: documents in, agent outputs out.

Every request is authenticated as a tenant (``kairo-guard tenants add T`` prints a key),
its body is sealed as that tenant's customer content, and what the service stores
carries its seal, so training scripts downstream know whose content it is.

    POST /documents        {"title": ..., "text": ...} or a multipart "file" upload
    GET  /documents        the caller's own documents (ids and titles)
    POST /agent/run        {"document_id": ..., "instruction": ...} -> agent output
    POST /train/examples   feeds the shared router training set: refused for tenants
    GET  /healthz          no credentials needed

    KAIRO_GUARD_HOME=... python examples/ingestion_service.py --data DIR [--port 8000]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kairo_guard import Guard
from kairo_guard.ingest.middleware import GuardMiddleware
from kairo_guard.ingest.provenance import RequestProvenance

SENTENCE = re.compile(r"(?<=[.!?])\s+")


class DocumentStore:
    """One JSONL file of sealed records per tenant and kind."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, tenant: str, kind: str) -> Path:
        directory = self.root / tenant
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{kind}.jsonl"

    def add(self, tenant: str, kind: str, record: dict[str, Any]) -> None:
        with self._path(tenant, kind).open("ab") as fh:
            fh.write(orjson.dumps(record) + b"\n")

    def all(self, tenant: str, kind: str) -> list[dict[str, Any]]:
        path = self._path(tenant, kind)
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def create_app(guard: Guard, data: Path) -> GuardMiddleware:
    """Return the service wrapped in GuardMiddleware."""
    store = DocumentStore(data)

    def provenance(request: Request) -> RequestProvenance:
        prov: RequestProvenance = request.scope["kairo_guard"]
        return prov

    async def upload(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form() as form:
                upload_file = form.get("file")
                if upload_file is None or isinstance(upload_file, str):
                    return JSONResponse({"error": "send a 'file' field"}, status_code=400)
                title = upload_file.filename or "upload"
                text = (await upload_file.read()).decode("utf-8", errors="replace")
        else:
            try:
                doc = orjson.loads(await request.body())
                title, text = str(doc["title"]), str(doc["text"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return JSONResponse({"error": "send JSON with title and text"}, status_code=400)
        prov = provenance(request)
        record: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "title": title, "text": text}
        record["_kairo"] = prov.seal_content(record, source="upload")
        store.add(prov.tenant, "documents", record)
        return JSONResponse({"id": record["id"], "request_seal": prov.seal}, status_code=201)

    async def list_documents(request: Request) -> Response:
        tenant = provenance(request).tenant
        docs = store.all(tenant, "documents")
        return JSONResponse([{"id": d["id"], "title": d["title"]} for d in docs])

    async def run_agent(request: Request) -> Response:
        prov = provenance(request)
        try:
            ask = orjson.loads(await request.body())
            doc_id, instruction = str(ask["document_id"]), str(ask.get("instruction", "summarize"))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return JSONResponse({"error": "send JSON with document_id"}, status_code=400)
        doc = next((d for d in store.all(prov.tenant, "documents") if d["id"] == doc_id), None)
        if doc is None:  # another tenant's id looks exactly like a missing one
            return JSONResponse({"error": "no such document"}, status_code=404)
        first = SENTENCE.split(doc["text"].strip(), maxsplit=1)[0]
        output: dict[str, Any] = {
            "id": uuid.uuid4().hex[:12],
            "document_id": doc_id,
            "instruction": instruction,
            "output": f"{first} ({len(doc['text'].split())} words)",
        }
        # An agent's output is the tenant's customer content too (the policy says so).
        output["_kairo"] = prov.seal_content(output, source="agent-run")
        store.add(prov.tenant, "agent_outputs", output)
        return JSONResponse({k: v for k, v in output.items() if k != "_kairo"}, status_code=201)

    async def train_examples(request: Request) -> Response:
        return JSONResponse({"error": "unreachable for tenants"}, status_code=500)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        guard.audit.flush()

    app = Starlette(
        routes=[
            Route("/documents", upload, methods=["POST"]),
            Route("/documents", list_documents, methods=["GET"]),
            Route("/agent/run", run_agent, methods=["POST"]),
            Route("/train/examples", train_examples, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    return GuardMiddleware(
        app,
        guard=guard,
        sink_routes={"/train/examples": guard.resolve_sink("router-train", kind="shared-training")},
        public_paths=["/healthz"],
        source="ingestion-service",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kairo-guard example ingestion service")
    parser.add_argument("--data", type=Path, required=True, help="where documents are stored")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    args = parser.parse_args(argv)
    with Guard() as guard:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)  # clients may connect as soon as the port file exists
        if args.port_file:
            tmp = args.port_file.with_suffix(".tmp")
            tmp.write_text(str(sock.getsockname()[1]))
            os.replace(tmp, args.port_file)
        config = uvicorn.Config(
            create_app(guard, args.data), log_level="warning", proxy_headers=False
        )
        uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
