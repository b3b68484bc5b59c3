"""The node agent's service-account tokens (`unistack.agent.podtokens`): which tokens a pod
wants, the TokenRequest it sends, and when a held token is renewed — against a small ASGI
stand-in for the API server's TokenRequest endpoint (in-process, no socket) and a clock the
test moves."""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest

from unistack.agent.podtokens import (
    PodTokens,
    Token,
    TokenKey,
    TokenUnavailable,
    request_token,
    token_request,
    wanted,
)
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.runtime import events

Obj = dict[str, Any]
START = 1_800_000_000.0
ACCESS = {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}


def pod(*volumes: Obj, account: str = "builder") -> Obj:
    return {
        "metadata": {"name": "web", "namespace": "team", "uid": "pod-uid"},
        "spec": {"serviceAccountName": account, "volumes": list(volumes)},
    }


def projected(name: str, *sources: Obj) -> Obj:
    return {"name": name, "projected": {"sources": list(sources)}}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """The TokenRequest subresource as the contract says: 201 with a token that expires
    `expirationSeconds` from now, or the status it is told to fail with."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[tuple[str, Obj]] = []
        self.fail_with: int | None = None

    async def __call__(self, scope: Obj, receive: Any, send: Any) -> None:
        body = orjson.loads((await receive())["body"])
        self.requests.append((scope["path"], body))
        if self.fail_with is not None:
            status = {"kind": "Status", "code": self.fail_with, "reason": "NotFound",
                      "message": 'serviceaccounts "builder" not found'}  # fmt: skip
            await self._answer(send, self.fail_with, status)
            return
        seconds = body["spec"]["expirationSeconds"]
        answer = {
            **body,
            "status": {
                "token": f"jwt-{len(self.requests)}",
                "expirationTimestamp": events.timestamp(self.clock.now + seconds),
            },
        }
        await self._answer(send, 201, answer)

    @staticmethod
    async def _answer(send: Any, status: int, body: Obj) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(clock: Clock) -> TokenEndpoint:
    return TokenEndpoint(clock)


@pytest.fixture
def tokens(endpoint: TokenEndpoint, clock: Clock) -> PodTokens:
    client = Client(AsgiTransport(endpoint))
    return PodTokens(functools.partial(request_token, client), clock)


def test_a_pod_wants_one_token_per_audience_and_lifetime() -> None:
    vault = {"serviceAccountToken": {"audience": "vault", "path": "vault-token"}}
    found = wanted(
        pod(
            projected("kube-api-access-abcde", ACCESS, {"configMap": {"name": "kube-root-ca.crt"}}),
            projected("again", ACCESS),
            projected("vault", vault),
            {"name": "scratch", "emptyDir": {}},
        )
    )
    assert found == {
        TokenKey("", 3607): "kube-api-access-abcde",
        TokenKey("vault", 3600): "vault",  # the lifetime defaults to an hour
    }


def test_the_request_binds_the_token_to_the_pod() -> None:
    assert token_request(pod(), TokenKey("", 3607)) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": 3607,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "pod-uid"},
        },
    }
    with_audience = token_request(pod(), TokenKey("vault", 600))["spec"]
    assert with_audience["audiences"] == ["vault"]


def test_a_token_is_renewed_at_80_percent_of_its_life_or_after_a_day() -> None:
    hour = Token("t", START + 3600, 3600)
    assert hour.refresh_at == START + 2880
    week = Token("t", START + 7 * 86400, 7 * 86400)
    assert week.refresh_at == START + 86400


async def test_tokens_are_asked_for_once_then_renewed_when_due(
    tokens: PodTokens, endpoint: TokenEndpoint, clock: Clock
) -> None:
    the_pod = pod(projected("kube-api-access-abcde", ACCESS))
    assert tokens.next_refresh() is None and not tokens.due()
    assert await tokens.current(the_pod) == {TokenKey("", 3607): "jwt-1"}
    [(path, body)] = endpoint.requests
    assert path == "/api/v1/namespaces/team/serviceaccounts/builder/token"
    assert body == token_request(the_pod, TokenKey("", 3607))
    assert tokens.next_refresh() == START + 0.8 * 3607

    clock.now = START + 0.79 * 3607
    assert not tokens.due()
    assert await tokens.current(the_pod) == {TokenKey("", 3607): "jwt-1"}
    assert len(endpoint.requests) == 1

    clock.now = START + 0.81 * 3607
    assert tokens.due()
    assert await tokens.current(the_pod) == {TokenKey("", 3607): "jwt-2"}
    assert not tokens.due()


async def test_a_failed_renewal_keeps_the_valid_token_and_tries_again_later(
    tokens: PodTokens, endpoint: TokenEndpoint, clock: Clock
) -> None:
    the_pod = pod(projected("kube-api-access-abcde", ACCESS))
    await tokens.current(the_pod)
    endpoint.fail_with = 500
    clock.now = START + 0.9 * 3607
    assert await tokens.current(the_pod) == {TokenKey("", 3607): "jwt-1"}
    assert not tokens.due()  # not again at once: after RETRY_S
    assert tokens.next_refresh() == clock.now + 10.0

    clock.now = START + 3607  # expired, still refused: nothing valid to mount
    with pytest.raises(TokenUnavailable) as refused:
        await tokens.current(the_pod)
    assert str(refused.value) == (
        'MountVolume.SetUp failed for volume "kube-api-access-abcde" : '
        'failed to fetch token: serviceaccounts "builder" not found'
    )

    endpoint.fail_with = None
    assert await tokens.current(the_pod) == {TokenKey("", 3607): f"jwt-{len(endpoint.requests)}"}


async def test_without_any_token_a_refusal_is_a_mount_failure(
    tokens: PodTokens, endpoint: TokenEndpoint
) -> None:
    endpoint.fail_with = 404
    with pytest.raises(TokenUnavailable, match='volume "kube-api-access-abcde"'):
        await tokens.current(pod(projected("kube-api-access-abcde", ACCESS)))
    assert tokens.next_refresh() is None
