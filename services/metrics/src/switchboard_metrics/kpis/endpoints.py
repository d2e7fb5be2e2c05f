from __future__ import annotations

from fastapi import APIRouter

from switchboard_common.auth import AdminPrincipal
from switchboard_common.http.deps import SessionDep
from switchboard_common.http.openapi import errors
from switchboard_metrics.kpis import service
from switchboard_metrics.kpis.schemas import KpiSnapshot

router = APIRouter(prefix="/v1", tags=["kpis"])


@router.get(
    "/kpis", summary="Live KPIs: volumes, queue and time to assignment", responses=errors(401, 403, 503)
)
async def kpis(_: AdminPrincipal, session: SessionDep) -> KpiSnapshot:
    return await service.snapshot(session)
