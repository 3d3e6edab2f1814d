"""Billing (data scientists and admins): the tenant's usage by operation and by day (a table
and a chart), its total, and its ledger entries filtered by operation and principal, over a
range of UTC days (``since`` inclusive, ``until`` exclusive; this month by default).
Figures come from ``services.ledger`` (the rollup for totals, the ledger for entries)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hartonomous.errors import UsageError
from hartonomous.security.roles import Role
from hartonomous.services.ledger import (
    LedgerFilter,
    ReportGrouping,
    ledger_report,
    list_ledger_entries,
)
from hartonomous.ui.access import Viewer, platform_of, viewer
from hartonomous.ui.rendering import render

router = APIRouter()
_ENTRIES = 50
_SCIENTIST = Depends(viewer(Role.DATA_SCIENTIST))


def _day(text: str, default: date, field: str, errors: dict[str, str]) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = f"{text!r} is not a date: write it as YYYY-MM-DD"
        return default


@router.get("/billing")
async def billing(request: Request, seen: Viewer = _SCIENTIST) -> Response:
    params = request.query_params
    today = datetime.now(UTC).date()
    errors: dict[str, str] = {}
    since = _day(params.get("since", ""), today.replace(day=1), "since", errors)
    until = _day(params.get("until", ""), today + timedelta(days=1), "until", errors)
    if not errors and until <= since:
        errors["until"] = f"until ({until}) must be after since ({since})"
    operation = params.get("operation", "").strip() or None
    principal = params.get("principal", "").strip() or None
    values = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "operation": operation or "",
        "principal": principal or "",
    }
    context: dict[str, Any] = {"values": values, "errors": errors, "report": None}
    if errors:
        return render(request, "billing.html", context, status_code=400)
    platform = platform_of(request)

    def read() -> dict[str, Any]:
        by_operation = ledger_report(
            platform,
            since=since,
            until=until,
            group_by=(ReportGrouping.OPERATION,),
            tenant_id=seen.tenant_id,
        )
        by_day = ledger_report(
            platform,
            since=since,
            until=until,
            group_by=(ReportGrouping.DAY,),
            tenant_id=seen.tenant_id,
        )
        entries = list_ledger_entries(
            platform,
            LedgerFilter(
                tenant_id=seen.tenant_id,
                operation=operation,
                principal_id=principal,
                recorded_since=datetime.combine(since, time(), UTC),
                recorded_before=datetime.combine(until, time(), UTC),
            ),
            limit=_ENTRIES,
            cursor=params.get("cursor") or None,
        )
        return {"report": by_operation, "by_day": by_day, "entries": entries}

    try:
        context |= await run_in_threadpool(read)
    except UsageError as exc:  # a cursor not issued for this listing
        context["errors"] = {"since": str(exc)}
        return render(request, "billing.html", context, status_code=400)
    by_day = context["by_day"]
    # Floats only to place the bars: every figure the page states is the exact Decimal.
    context["chart"] = json.dumps(
        {
            "range": [since.isoformat(), until.isoformat()],
            "days": [row.keys["day"] for row in by_day.rows],
            "dcu": [float(row.total_dcu) for row in by_day.rows],
        }
    )
    return render(request, "billing.html", context)
