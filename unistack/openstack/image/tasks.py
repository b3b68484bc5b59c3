"""`/v2/tasks`: Glance's tasks API — create an `import` task, list tasks, show one.

A task is a `Task` object (`kinds.TASKS`) in its owner's namespace, made `pending` and
carried out in the background by `task_import` (processing, then success or failure); it
expires `task_time_to_live` after it ends and is deleted by the next list or create. As
Glance's default policy (`tasks_api_access: role:admin`), only an admin may use the API.
`GET /v2/tasks/{id}` also shows the `api_image_import` tasks that `transfer` records on an
image. A list shows each task without its input, result and message, as Glance's does.
Tasks cannot be deleted (405).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.image import kinds
from unistack.iaas.records import Missing, object_id, spec_of, status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.image.service import ImageService, now_iso
from unistack.openstack.image.task_import import ImportRunner
from unistack.openstack.web import OpenStackError, bad_request, json_response, not_found, read_json

Obj = dict[str, Any]
TASK_TYPES = ("import",)
STATUSES = ("pending", "processing", "success", "failure")
SORT_KEYS = ("created_at", "updated_at", "expires_at", "id", "type", "status")
DEFAULT_LIMIT = 25  # Glance's limit_param_default
MAX_LIMIT = 1000  # api_limit_max
_HIDDEN_IN_LISTS = ("input", "result", "message")


def task_view(task: Obj) -> Obj:
    """The task as Glance shows it (`GET /v2/tasks/{id}`)."""
    spec, status = spec_of(task), status_of(task)
    task_id = object_id(task)
    return {
        "id": task_id,
        "type": spec.get("type"),
        "status": status.get("status", "pending"),
        "owner": spec.get("owner"),
        "input": spec.get("input"),
        "result": status.get("result"),
        "message": status.get("message", ""),
        "image_id": (status.get("result") or {}).get("image_id"),
        "request_id": spec.get("request_id"),
        "user_id": spec.get("user_id"),
        "created_at": spec.get("created_at"),
        "updated_at": status.get("updated_at") or spec.get("created_at"),
        "expires_at": status.get("expires_at"),
        "self": f"/v2/tasks/{task_id}",
        "schema": "/v2/schemas/task",
    }


def listed_view(shown: Obj) -> Obj:
    return {key: value for key, value in shown.items() if key not in _HIDDEN_IN_LISTS}


def expired(shown: Obj, now: str) -> bool:
    return bool(shown.get("expires_at")) and str(shown["expires_at"]) <= now


def check_create(body: Obj) -> tuple[str, Obj]:
    """The type and input of a create request (400 in Glance's words)."""
    for key in ("type", "input"):
        if key not in body:
            raise bad_request(f"Task '{key}' is required")
    extra = sorted(set(body) - {"type", "input"})
    if extra:
        raise bad_request(f"Attribute '{extra[0]}' is read-only.")
    if body["type"] not in TASK_TYPES:
        raise bad_request(f"Invalid type value: {body['type']}")
    if not isinstance(body["input"], dict):
        raise bad_request("Invalid input: the task input must be an object.")
    return str(body["type"]), dict(body["input"])


@dataclass
class ListQuery:
    status: str | None
    task_type: str | None
    sort_key: str
    descending: bool
    limit: int
    marker: str | None


def list_query(query: Any) -> ListQuery:
    status, task_type = query.get("status"), query.get("type")
    if status is not None and status not in STATUSES:
        raise bad_request(f"Invalid status value: {status}")
    if task_type is not None and task_type not in TASK_TYPES:
        raise bad_request(f"Invalid type value: {task_type}")
    sort_key, sort_dir = query.get("sort_key", "created_at"), query.get("sort_dir", "desc")
    if sort_key not in SORT_KEYS:
        raise bad_request(f"Invalid sort key: {sort_key}")
    if sort_dir not in ("asc", "desc"):
        raise bad_request(f"Invalid sort direction: {sort_dir}")
    text = query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(text)
    except ValueError:
        raise bad_request("limit param must be an integer") from None
    if limit < 0:
        raise bad_request("limit param must be positive")
    marker = query.get("marker")
    return ListQuery(status, task_type, sort_key, sort_dir == "desc", min(limit, MAX_LIMIT), marker)


def select(shown: list[Obj], wanted: ListQuery) -> tuple[list[Obj], bool]:
    """The page of tasks the query asks for, and whether more follow."""
    found = [
        task
        for task in shown
        if (wanted.status is None or task["status"] == wanted.status)
        and (wanted.task_type is None or task["type"] == wanted.task_type)
    ]
    found.sort(key=lambda task: task["id"], reverse=wanted.descending)
    found.sort(key=lambda task: str(task.get(wanted.sort_key) or ""), reverse=wanted.descending)
    start = 0
    if wanted.marker is not None:
        ids = [task["id"] for task in found]
        if wanted.marker not in ids:
            raise bad_request(f"Invalid marker. Task {wanted.marker} could not be found.")
        start = ids.index(wanted.marker) + 1
    page = found[start : start + wanted.limit]
    return page, bool(page) and start + wanted.limit < len(found)


@dataclass
class Tasks:
    service: ImageService
    runner: ImportRunner
    running: set[asyncio.Task[None]] = field(default_factory=set)

    def routes(self) -> list[Route]:
        return [
            Route("/v2/tasks", self.list_tasks, methods=["GET"]),
            Route("/v2/tasks", self.create_task, methods=["POST"]),
            Route("/v2/tasks/{task_id}", self.show_task, methods=["GET"]),
            Route("/v2/tasks/{task_id}", self.delete_task, methods=["DELETE"]),
        ]

    def _admin(self, request: Request, action: str) -> AuthContext:
        context = self.service.caller(request)
        if not context.is_admin:
            raise OpenStackError(403, f"You are not authorized to complete {action} action.")
        return context

    async def create_task(self, request: Request) -> Response:
        context = self._admin(request, "add_task")
        task_type, task_input = check_create(await read_json(request))
        if not context.project_id:
            raise OpenStackError(403, "Tasks are owned by a project: use a project-scoped token.")
        await self._sweep()
        task_id, stamp = str(uuid.uuid4()), now_iso()
        spec = {
            "type": task_type,
            "input": task_input,
            "owner": context.project_id,
            "project_id": context.project_id,
            "user_id": context.user_id,
            "request_id": request.scope.get("state", {}).get("request_id", ""),
            "created_at": stamp,
        }
        status = {"status": "pending", "result": None, "message": "", "updated_at": stamp}
        created = await self.service.records.create(kinds.TASKS, task_id, spec, status)
        self._start(task_id, task_input, context)
        return json_response(task_view(created), 201, {"Location": f"/v2/tasks/{task_id}"})

    def _start(self, task_id: str, task_input: Obj, context: AuthContext) -> None:
        job = asyncio.create_task(self.runner.run(task_id, task_input, context))
        self.running.add(job)
        job.add_done_callback(self.running.discard)

    async def list_tasks(self, request: Request) -> Response:
        self._admin(request, "get_tasks")
        wanted = list_query(request.query_params)
        await self._sweep()
        shown = [task_view(task) for task in self.service.records.all(kinds.TASKS)]
        page, more = select(shown, wanted)
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        body: Obj = {
            "tasks": [listed_view(task) for task in page],
            "first": "/v2/tasks" + (f"?{urlencode(params)}" if params else ""),
            "schema": "/v2/schemas/tasks",
        }
        if more:
            body["next"] = "/v2/tasks?" + urlencode([*params, ("marker", page[-1]["id"])])
        return json_response(body)

    async def show_task(self, request: Request) -> Response:
        self._admin(request, "get_task")
        task_id = str(request.path_params["task_id"])
        task = self.service.records.get(kinds.TASKS, task_id)
        shown = task_view(task) if task is not None else self._image_task(task_id)
        if shown is None or expired(shown, now_iso()):
            raise not_found(f"Task with the given ID {task_id} was not found")
        return json_response(shown)

    async def delete_task(self, request: Request) -> Response:
        self._admin(request, "delete_task")
        raise OpenStackError(
            405,
            "This operation is currently not permitted on Glance Tasks. They are auto "
            "deleted after reaching the time based on their expires_at property.",
            {"Allow": "GET"},
        )

    def _image_task(self, task_id: str) -> Obj | None:
        """An `api_image_import` task recorded on an image, by its id."""
        for image in self.service.records.all(kinds.IMAGES):
            for task in status_of(image).get("tasks") or []:
                if task.get("id") == task_id:
                    return dict(task)
        return None

    async def _sweep(self) -> None:
        """Delete the tasks that have expired."""
        now = now_iso()
        for task in self.service.records.all(kinds.TASKS):
            if expired(task_view(task), now):
                try:
                    await self.service.records.delete(kinds.TASKS, object_id(task))
                except Missing:
                    continue

    async def stop(self) -> None:
        """Cancel the tasks under way (the gateway is stopping)."""
        for job in list(self.running):
            job.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
