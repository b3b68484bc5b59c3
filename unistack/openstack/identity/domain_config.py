"""`/v3/domains/{id}/config`: a domain's own identity driver options, as Keystone keeps them.

Keystone lets a domain override the `[identity]` and `[ldap]` options of keystone.conf
(domain-specific drivers); only a whitelist of options may be set, plus the sensitive
`[ldap] password`, which is stored but never shown. The whole configuration, one group of it
or one option can be created (`PUT`, 201 when new, 200 when replaced), shown, updated
(`PATCH`, merged into what is there) and deleted; the defaults (what keystone.conf says) are
read from `/v3/domains/config/default`, `.../{group}/default` and `.../{group}/{option}/default`.
The configuration lives on the Domain object (`spec.config`). unistack serves one identity
backend, so a stored configuration is kept and shown but does not change how users are found.

The rules are pure functions over plain dicts (`checked_config`, `merged`, `without`), the
handlers only read, call them and write.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.identity import kinds
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.identity.service import IdentityService
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    forbidden,
    json_response,
    read_json,
)

Obj = dict[str, Any]

# keystone.conf's defaults for the options a domain may override.
DEFAULTS: dict[str, Obj] = {
    "identity": {"driver": "sql", "list_limit": None},
    "ldap": {
        "url": "ldap://localhost",
        "user": None,
        "suffix": "cn=example,cn=com",
        "query_scope": "one",
        "page_size": 0,
        "alias_dereferencing": "default",
        "debug_level": None,
        "chase_referrals": None,
        "user_tree_dn": None,
        "user_filter": None,
        "user_objectclass": "inetOrgPerson",
        "user_id_attribute": "cn",
        "user_name_attribute": "sn",
        "user_description_attribute": "description",
        "user_mail_attribute": "mail",
        "user_pass_attribute": "userPassword",
        "user_enabled_attribute": "enabled",
        "user_enabled_invert": False,
        "user_enabled_mask": 0,
        "user_enabled_default": "True",
        "user_attribute_ignore": ["default_project_id"],
        "user_default_project_id_attribute": None,
        "user_enabled_emulation": False,
        "user_enabled_emulation_dn": None,
        "user_enabled_emulation_use_group_config": False,
        "user_additional_attribute_mapping": [],
        "group_tree_dn": None,
        "group_filter": None,
        "group_objectclass": "groupOfNames",
        "group_id_attribute": "cn",
        "group_name_attribute": "ou",
        "group_member_attribute": "member",
        "group_members_are_ids": False,
        "group_desc_attribute": "description",
        "group_attribute_ignore": [],
        "group_additional_attribute_mapping": [],
        "tls_cacertfile": None,
        "tls_cacertdir": None,
        "use_tls": False,
        "tls_req_cert": "demand",
        "use_pool": True,
        "pool_size": 10,
        "pool_retry_max": 3,
        "pool_retry_delay": 0.1,
        "pool_connection_timeout": -1,
        "pool_connection_lifetime": 600,
        "use_auth_pool": True,
        "auth_pool_size": 100,
        "auth_pool_connection_lifetime": 60,
    },
}
SENSITIVE: dict[str, frozenset[str]] = {"identity": frozenset(), "ldap": frozenset({"password"})}


def _invalid(reason: str) -> OpenStackError:
    return forbidden(f"Invalid domain specific configuration: {reason}.")


def _missing(domain_id: str, what: str) -> OpenStackError:
    return OpenStackError(
        404, f"Could not find {what} in domain configuration for domain {domain_id}."
    )


def check_group(group: str) -> None:
    if group not in DEFAULTS:
        raise _invalid(f"Group {group} is not supported for domain specific configurations")


def check_option(group: str, option: str) -> None:
    check_group(group)
    if option not in DEFAULTS[group] and option not in SENSITIVE[group]:
        raise _invalid(
            f"Option {option} in group {group} is not supported for domain specific configurations"
        )


def checked_config(config: Any) -> dict[str, Obj]:
    """A configuration body as groups of options, each allowed; else Keystone's errors."""
    if not isinstance(config, dict) or not config:
        raise bad_request("Invalid input for field 'config': a non-empty object is required.")
    for group, options in config.items():
        check_group(group)
        if not isinstance(options, dict) or not options:
            raise _invalid(f"Group {group} must be an object of options")
        for option in options:
            check_option(group, option)
    return {group: dict(options) for group, options in config.items()}


def merged(stored: dict[str, Obj], change: dict[str, Obj]) -> dict[str, Obj]:
    """`stored` with each option of `change` set."""
    result = {group: dict(options) for group, options in stored.items()}
    for group, options in change.items():
        result.setdefault(group, {}).update(options)
    return result


def without(stored: dict[str, Obj], group: str, option: str | None) -> dict[str, Obj]:
    """`stored` less one group, or one option (and its group once it is empty)."""
    result = {name: dict(options) for name, options in stored.items() if name != group}
    if option is not None:
        rest = {k: v for k, v in stored.get(group, {}).items() if k != option}
        if rest:
            result[group] = rest
    return result


def shown(config: dict[str, Obj]) -> dict[str, Obj]:
    """What a reader sees: everything but the sensitive options."""
    visible = {
        group: {k: v for k, v in options.items() if k not in SENSITIVE.get(group, ())}
        for group, options in config.items()
    }
    return {group: options for group, options in visible.items() if options}


class DomainConfigs:
    def __init__(self, service: IdentityService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v3/domains/{domain}/config"
        return [
            Route("/v3/domains/config/default", self.defaults, methods=["GET"]),
            Route("/v3/domains/config/{group}/default", self.defaults, methods=["GET"]),
            Route("/v3/domains/config/{group}/{option}/default", self.defaults, methods=["GET"]),
            Route(base, self.whole, methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route(base + "/{group}", self.part, methods=["GET", "PATCH", "DELETE"]),
            Route(base + "/{group}/{option}", self.part, methods=["GET", "PATCH", "DELETE"]),
        ]

    async def defaults(self, request: Request) -> Response:
        auth.require_admin(self.service.caller(request), "identity:get_domain_config_default")
        group, option = request.path_params.get("group"), request.path_params.get("option")
        if group is None:
            return json_response({"config": DEFAULTS})
        if option is None:
            check_group(group)
            return json_response({"config": {group: DEFAULTS[group]}})
        check_option(group, option)
        if option in SENSITIVE[group]:
            raise _missing("default", f"option {option} in group {group}")
        return json_response({"config": {option: DEFAULTS[group][option]}})

    def _stored(self, domain_id: str) -> dict[str, Obj]:
        domain = self.service.get(kinds.DOMAINS, domain_id, "domain")
        return dict(spec_of(domain).get("config") or {})

    async def _write(self, domain_id: str, config: dict[str, Obj]) -> None:
        def change(spec: Obj) -> None:
            spec["config"] = config

        await self.service.update(kinds.DOMAINS, domain_id, change, "domain")

    async def whole(self, request: Request) -> Response:
        context = self.service.caller(request)
        verb = {"GET": "get", "PUT": "create", "PATCH": "update"}.get(request.method, "delete")
        auth.require_admin(context, f"identity:{verb}_domain_config")
        domain_id = request.path_params["domain"]
        stored = self._stored(domain_id)
        if request.method == "PUT":
            config = checked_config((await read_json(request)).get("config"))
            await self._write(domain_id, config)
            return json_response({"config": shown(config)}, 200 if stored else 201)
        if not stored:
            raise _missing(domain_id, "any options")
        if request.method == "GET":
            return json_response({"config": shown(stored)})
        if request.method == "DELETE":
            await self._write(domain_id, {})
            return empty()
        config = merged(stored, checked_config((await read_json(request)).get("config")))
        await self._write(domain_id, config)
        return json_response({"config": shown(config)})

    async def part(self, request: Request) -> Response:
        """One group (`/config/{group}`) or one option (`/config/{group}/{option}`)."""
        context = self.service.caller(request)
        verb = {"GET": "get", "PATCH": "update"}.get(request.method, "delete")
        auth.require_admin(context, f"identity:{verb}_domain_config")
        domain_id = request.path_params["domain"]
        group, option = request.path_params["group"], request.path_params.get("option")
        check_group(group) if option is None else check_option(group, option)
        stored = self._stored(domain_id)
        options = shown(stored).get(group, {})
        what = f"group {group}" if option is None else f"option {option} in group {group}"
        if group not in stored or (option is not None and option not in options):
            raise _missing(domain_id, what)
        if request.method == "GET":
            return json_response(
                {"config": {group: options} if option is None else {option: options[option]}}
            )
        if request.method == "DELETE":
            await self._write(domain_id, without(stored, group, option))
            return empty()
        body = (await read_json(request)).get("config")
        change = _part_change(body, group, option)
        config = merged(stored, change)
        await self._write(domain_id, config)
        return json_response({"config": shown(config)})


def _part_change(body: Any, group: str, option: str | None) -> dict[str, Obj]:
    """A PATCH body for one group or option, which must name that group or option only."""
    if option is None:
        if not isinstance(body, dict) or set(body) != {group}:
            raise bad_request(
                f"Trying to update group {group}, so that, and only that, group must be "
                "specified in the config"
            )
        return checked_config(body)
    if not isinstance(body, dict) or set(body) != {option}:
        raise bad_request(
            f"Trying to update option {option} in group {group}, so that, and only that, "
            "option must be specified in the config"
        )
    return {group: {option: body[option]}}
