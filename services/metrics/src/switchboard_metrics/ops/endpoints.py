from __future__ import annotations

from fastapi import APIRouter, Request

from switchboard_common.auth import AdminPrincipal
from switchboard_common.errors import Unavailable
from switchboard_common.http.openapi import errors
from switchboard_metrics.ops.probe import OpsHealthChecker
from switchboard_metrics.ops.schemas import OpsHealth

router = APIRouter(prefix="/v1", tags=["ops"])


@router.get(
    "/ops/health",
    summary="The readiness of every service: database, broker, consumer groups and their lag",
    description=(
        "Asks each configured service's `/health/ready` at once (2.5 s each) and reads this service's own "
        "in process. A service that does not answer is reported `unreachable`, one that answers not ready "
        "`unavailable`; the answer itself is 200 whatever their state. 503 only when the view is not set "
        "up in this process."
    ),
    responses=errors(401, 403, 503),
)
async def ops_health(_: AdminPrincipal, request: Request) -> OpsHealth:
    checker: OpsHealthChecker | None = getattr(request.app.state, "ops_health", None)
    if checker is None:
        raise Unavailable("the ops health view is not set up in this process")
    return await checker.check(request.app.state.runtime, str(request.base_url).rstrip("/"))
