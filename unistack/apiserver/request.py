"""The request as handlers see it: method, parsed query, headers, body and the caller."""

from __future__ import annotations

from dataclasses import dataclass, field

from unistack.apiserver import errors


@dataclass(frozen=True, slots=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    user: User = field(default_factory=lambda: User("system:anonymous"))
    # the Impersonate-* headers in their order (a group may repeat), lower-cased names
    impersonation: tuple[tuple[str, str], ...] = ()

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        value = self.param(name)
        return value is not None and value.lower() in ("true", "1", "")

    def int_param(self, name: str) -> int | None:
        value = self.param(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise errors.bad_request(f"invalid value for {name}: {value!r}") from None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json").split(";")[0].strip()

    @property
    def dry_run(self) -> bool:
        values = self.query.get("dryRun", [])
        for value in values:
            if value != "All":
                raise errors.bad_request(
                    f'Invalid dry run value: {value!r}: supported values: "All"'
                )
        return bool(values)

    def wants_table(self) -> bool:
        return "as=Table" in self.headers.get("accept", "")

    @property
    def field_manager(self) -> str | None:
        manager = self.param("fieldManager")
        if manager is not None and len(manager) > 128:
            raise errors.bad_request("fieldManager: Too long: must have at most 128 bytes")
        return manager

    def default_manager(self) -> str:
        """kube-apiserver names an unnamed manager after the User-Agent's first word."""
        agent = self.headers.get("user-agent", "")
        return agent.split("/")[0][:128] if agent else "unknown"
