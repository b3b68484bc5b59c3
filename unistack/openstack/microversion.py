"""Microversion negotiation, as Nova and Cinder do it (the API-WG microversion guideline).

A request asks for a version with `OpenStack-API-Version: compute 2.53` (or Nova's legacy
`X-OpenStack-Nova-API-Version: 2.53`); `latest` means the newest; none means the oldest. A
malformed value is a 400, one outside [min, max] a 406 ("Version 2.99 is not supported by the
API. Minimum is 2.1 and maximum is 2.96."). The answer echoes the version chosen in the same
headers and adds `Vary`, so caches keep versions apart. `NegotiatingApp` does this around a
service's app, errors included; handlers read the version with `version_of(request)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unistack.openstack.web import ErrorFormat, OpenStackError, bad_request, json_response

_VERSION = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text.strip())
        if match is None:
            raise bad_request(
                f"API Version String {text} is of invalid format. Must be of format "
                "MajorNum.MinorNum."
            )
        return cls(int(match[1]), int(match[2]))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        return self >= Version.parse(text)


@dataclass(frozen=True)
class Microversions:
    service: str  # "compute", "volume"
    minimum: str
    maximum: str
    legacy_header: str = ""  # "X-OpenStack-Nova-API-Version"

    @property
    def lowest(self) -> Version:
        return Version.parse(self.minimum)

    @property
    def highest(self) -> Version:
        return Version.parse(self.maximum)

    def requested(self, request: Request) -> Version:
        """The version the request asks for, checked against the range."""
        text = None
        for value in request.headers.getlist("openstack-api-version"):
            for part in value.split(","):
                words = part.split()
                if len(words) == 2 and words[0].lower() == self.service:
                    text = words[1]
        if text is None and self.legacy_header:
            text = request.headers.get(self.legacy_header)
        if text is None:
            return self.lowest
        if text.strip().lower() == "latest":
            return self.highest
        version = Version.parse(text)
        if not self.lowest <= version <= self.highest:
            raise OpenStackError(
                406,
                f"Version {version} is not supported by the API. Minimum is {self.minimum} "
                f"and maximum is {self.maximum}.",
            )
        return version

    def headers(self, version: Version) -> dict[str, str]:
        sent = {"OpenStack-API-Version": f"{self.service} {version}"}
        vary = ["OpenStack-API-Version"]
        if self.legacy_header:
            sent[self.legacy_header] = str(version)
            vary.append(self.legacy_header)
        sent["Vary"] = ", ".join(vary)
        return sent


def version_of(request: Request) -> Version:
    """The version `NegotiatingApp` chose for this request."""
    return request.scope["state"]["microversion"]


class NegotiatingApp:
    """Negotiates the microversion of every request under `prefix` (the versioned API, not
    the version documents), and echoes it on the answer."""

    def __init__(
        self, app: ASGIApp, versions: Microversions, error_format: ErrorFormat, prefix: str = ""
    ) -> None:
        self.app = app
        self.versions = versions
        self.error_format = error_format
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
        if scope["type"] != "http" or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        try:
            version = self.versions.requested(Request(scope))
        except OpenStackError as exc:
            body = self.error_format(exc.status, exc.message, exc.error_type)
            await json_response(body, exc.status)(scope, receive, send)
            return
        scope.setdefault("state", {})["microversion"] = version
        answer = self.versions.headers(version)
        extra = [(k.lower().encode(), v.encode()) for k, v in answer.items()]

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_version)
