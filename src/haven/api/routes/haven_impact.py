"""``GET /v1/haven/impact?down=NAME``: which user operations stop, degrade and keep working if a service
(every replica), a controller or a failure domain (its replicas) is down; ``haven impact NAME --json``.

Registered by haven.api.app; its policy (reader) is in haven.api.policy. From haven.topology over the
built-in catalogue, with the controllers and their replicas as the control plane's leader last recorded
them (the store). The API is given no haven.toml, so a ``[controlplane.services]`` override of a
service's ``depends_on``, ``min_replicas`` or ``quorum`` is seen by the CLI only (docs/controlplane.md,
"Impact"), and the controllers and domains it names are those the store recorded replicas on. An
unknown name is a 400 naming the valid ones.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from haven.api.auth import require_policy
from haven.api.context import ApiContext
from haven.controlplane.catalogue import CATALOGUE
from haven.domain.errors import UserError
from haven.topology import openstack_topology
from haven.topology.impact import impact, impact_json, resolve

IMPACT_PATH = "/v1/haven/impact"


class LossView(BaseModel):
    service: str
    left: int
    of: int
    needs: int  # serving replicas it cannot do without (a quorum-based cluster: a majority)
    down: bool


class VerdictView(BaseModel):
    name: str
    label: str
    effect: str  # "stops", "degraded" or "works"
    because: list[str]
    why: str  # how the operation is still done despite a lost service it calls; "" otherwise


class ImpactView(BaseModel):
    down: str
    kind: str  # "service", "controller" or "domain"
    losses: list[LossView]
    stops: list[str]
    degraded: list[str]
    works: list[str]
    operations: list[VerdictView]
    services: list[VerdictView]


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"])
    topology = openstack_topology(CATALOGUE.values())
    declared = {str(name): spec.min_replicas for name, spec in CATALOGUE.items()}
    quorum = [str(name) for name, spec in CATALOGUE.items() if spec.quorum]

    @routes.get(
        IMPACT_PATH,
        summary="What stops, degrades and keeps working if a service, controller or failure domain is down",
        dependencies=[Depends(require_policy)],
    )
    def what_if(
        down: str = Query(
            ..., min_length=1, max_length=255, description="a service, a controller host or a failure domain"
        ),
    ) -> ImpactView:
        replicas = ctx.store.list_replicas()
        try:
            target = resolve(topology, down, replicas, declared, (), (), quorum)
        except UserError as exc:
            raise UserError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from exc
        return ImpactView.model_validate(impact_json(target, impact(topology, target.losses)))

    return routes
