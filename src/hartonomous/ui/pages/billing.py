"""Billing: the tenant's usage by operation and by day (tables and charts), its total, and its
ledger entries filtered by operation and principal, over a range of UTC days (``since``
inclusive, ``until`` exclusive; this month by default), with the entries of that range and
filter downloadable as CSV or JSON Lines (streamed); and the tenant's invoice preview for a
month. Figures come from ``services.ledger`` (the rollup for totals, the ledger for entries)
and ``services.billing.invoice`` (docs/billing.md). The usage pages need the data-scientist
role (as `/v1/ledger`); the invoice preview any role (as `GET /v1/billing/invoice`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from hartonomous.billing.periods import period_label
from hartonomous.errors import UsageError
from hartonomous.security.roles import Role
from hartonomous.services.billing import invoice
from hartonomous.services.ledger import (
    LedgerEntry,
    LedgerFilter,
    ReportGrouping,
    iter_ledger_entries,
    ledger_report,
    list_ledger_entries,
)
from hartonomous.ui.access import ANYONE, Viewer, platform_of, viewer
from hartonomous.ui.rendering import render

router = APIRouter()
_ENTRIES = 50
_SCIENTIST = Depends(viewer(Role.DATA_SCIENTIST))
EXPORT_COLUMNS = tuple(LedgerEntry.model_fields)
"""The columns of the CSV export, in order: the ledger entry's fields (docs/admin-ui.md)."""
_EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl"}


@dataclass
class _Range:
    """The page's query: a range of UTC days and the filters, or the errors beside fields."""

    since: date
    until: date
    operation: str | None
    principal: str | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, str]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "operation": self.operation or "",
            "principal": self.principal or "",
        }

    def entries_filter(self, tenant_id: str) -> LedgerFilter:
        return LedgerFilter(
            tenant_id=tenant_id,
            operation=self.operation,
            principal_id=self.principal,
            recorded_since=datetime.combine(self.since, time(), UTC),
            recorded_before=datetime.combine(self.until, time(), UTC),
        )


def _day(text: str, default: date, name: str, errors: dict[str, str]) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[name] = f"{text!r} is not a date: write it as YYYY-MM-DD"
        return default


def _range(request: Request) -> _Range:
    params = request.query_params
    today = datetime.now(UTC).date()
    errors: dict[str, str] = {}
    since = _day(params.get("since", ""), today.replace(day=1), "since", errors)
    until = _day(params.get("until", ""), today + timedelta(days=1), "until", errors)
    if not errors and until <= since:
        errors["until"] = f"until ({until}) must be after since ({since})"
    return _Range(
        since,
        until,
        params.get("operation", "").strip() or None,
        params.get("principal", "").strip() or None,
        errors,
    )


@router.get("/billing")
async def billing(request: Request, seen: Viewer = _SCIENTIST) -> Response:
    asked = _range(request)
    context: dict[str, Any] = {
        "section": "billing",
        "values": asked.values,
        "errors": asked.errors,
        "report": None,
    }
    if asked.errors:
        return render(request, "billing.html", context, status_code=400)
    platform = platform_of(request)

    def read() -> dict[str, Any]:
        by_operation = ledger_report(
            platform,
            since=asked.since,
            until=asked.until,
            group_by=(ReportGrouping.OPERATION,),
            tenant_id=seen.tenant_id,
        )
        by_day = ledger_report(
            platform,
            since=asked.since,
            until=asked.until,
            group_by=(ReportGrouping.DAY,),
            tenant_id=seen.tenant_id,
        )
        entries = list_ledger_entries(
            platform,
            asked.entries_filter(seen.tenant_id),
            limit=_ENTRIES,
            cursor=request.query_params.get("cursor"),  # empty: refused, as everywhere
        )
        return {"report": by_operation, "by_day": by_day, "entries": entries}

    try:
        context |= await run_in_threadpool(read)
    except UsageError as exc:  # a cursor not issued for this listing
        context["errors"] = {"since": str(exc)}
        return render(request, "billing.html", context, status_code=400)
    by_day, by_operation = context["by_day"], context["report"]
    # Floats only to place the bars: every figure the page states is the exact Decimal.
    context["chart"] = json.dumps(
        {
            "range": [asked.since.isoformat(), asked.until.isoformat()],
            "days": [row.keys["day"] for row in by_day.rows],
            "dcu": [float(row.total_dcu) for row in by_day.rows],
        }
    )
    context["operation_chart"] = json.dumps(
        {
            "labels": [row.keys["operation"] for row in by_operation.rows],
            "dcu": [float(row.total_dcu) for row in by_operation.rows],
        }
    )
    return render(request, "billing.html", context)


@router.get("/billing/export")
async def billing_export(
    request: Request, format: Literal["csv", "jsonl"] = "csv", seen: Viewer = _SCIENTIST
) -> Response:
    """The entries of the billing page's range and filters, oldest first, as a download:
    CSV (a header row of ``EXPORT_COLUMNS``) or JSON Lines (one entry per line); money as
    exact decimal strings. Streamed from one snapshot, ``EXPORT_BATCH_ROWS`` at a time."""
    asked = _range(request)
    if asked.errors:
        context = {"section": "billing", "values": asked.values, "errors": asked.errors}
        return render(request, "billing.html", {**context, "report": None}, status_code=400)
    entries = iter_ledger_entries(platform_of(request), asked.entries_filter(seen.tenant_id))
    lines = _csv_lines(entries) if format == "csv" else _jsonl_lines(entries)
    name = f"ledger-{seen.tenant_id}-{asked.since}-{asked.until}.{format}"
    return StreamingResponse(
        lines,
        media_type=_EXPORT_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _csv_lines(entries: Iterator[LedgerEntry]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for entry in entries:
        data = entry.model_dump(mode="json")
        writer.writerow(
            json.dumps(value, sort_keys=True)
            if isinstance(value, dict)
            else ""
            if value is None
            else value
            for value in (data[name] for name in EXPORT_COLUMNS)
        )
        if out.tell() > 65536:  # sent a chunk at a time, not a row at a time
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _jsonl_lines(entries: Iterator[LedgerEntry]) -> Iterator[str]:
    for entry in entries:
        yield entry.model_dump_json() + "\n"


@router.get("/billing/invoice")
async def invoice_page(request: Request, seen: Viewer = ANYONE) -> Response:
    """The tenant's invoice preview for ``period`` (``YYYY-MM``, this month by default);
    ``format=csv`` or ``json`` downloads it as `GET /v1/billing/invoice` answers."""
    params = request.query_params
    period = params.get("period", "").strip() or period_label(datetime.now(UTC).date())
    wanted = params.get("format", "")
    context: dict[str, Any] = {"section": "invoice", "period": period, "errors": {}}
    if wanted not in ("", "csv", "json"):
        context["errors"] = {"period": f"unknown format {wanted!r}: csv or json"}
        return render(request, "invoice.html", context, status_code=400)
    try:
        preview = await run_in_threadpool(invoice, platform_of(request), seen.tenant_id, period)
    except UsageError as exc:  # a period not written YYYY-MM, or in the future
        context["errors"] = {"period": str(exc)}
        return render(request, "invoice.html", context, status_code=400)
    if wanted:
        body, media = (
            (preview.to_csv(), "text/csv; charset=utf-8")
            if wanted == "csv"
            else (preview.to_json(), "application/json")
        )
        filename = f"invoice-{seen.tenant_id}-{period}.{wanted}"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return render(request, "invoice.html", {**context, "invoice": preview.as_json()})
