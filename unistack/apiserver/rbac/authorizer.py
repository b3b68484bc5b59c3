"""The RBAC authorizer: a request is allowed when a rule bound to the user allows it.

`RbacAuthorizer` answers from an `index.RbacIndex` that a `following.StoreFollower` keeps in
step with the store (`start` lists and watches, `stop` ends the watch), so `authorize` is
synchronous, as the `auth.Authorizer` seam is. A refusal has no reason of its own (the
request's attributes say everything), as upstream's RBAC authorizer says nothing on a plain
no-match. `rules_for` is what a SelfSubjectRulesReview reports and what the escalation check
compares a new role with.
"""

from __future__ import annotations

from unistack import store as storage
from unistack.apiserver import following
from unistack.apiserver.auth import Attributes
from unistack.apiserver.rbac import index, rules
from unistack.apiserver.request import User


class RbacAuthorizer:
    def __init__(self, store: storage.ObjectStore) -> None:
        self.index = index.RbacIndex()
        self.follower = following.StoreFollower(store, index.PREFIX, self.index)

    async def start(self) -> None:
        await self.follower.start()

    def stop(self) -> None:
        self.follower.stop()

    def authorize(self, user: User, attributes: Attributes) -> str | None:
        for rule in self.index.rules_for(user, attributes.namespace):
            if rules.allows(rule, attributes):
                return None
        return ""

    def rules_for(self, user: User, namespace: str) -> list[rules.PolicyRule]:
        return list(self.index.rules_for(user, namespace))
