"""Exact decimal arithmetic for the meter, and the NUMERIC(18,6) shape of ledger columns.

Products are computed with a precision large enough to be exact, so the only rounding in a
ledger entry is the documented one (6 places, half away from zero). The original used .NET
`decimal` (28-29 significant digits), which could round an intermediate product silently;
within that range both give the same digits.
"""

from __future__ import annotations

from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

LEDGER_SCALE = 6
LEDGER_PRECISION = 18
_LEDGER_LIMIT = Decimal(10) ** (LEDGER_PRECISION - LEDGER_SCALE)


class LedgerValueError(ValueError):
    """A metered value cannot be stored in a NUMERIC(18,6) ledger column."""


def _context(*, inexact: bool) -> Context:
    # Python's ROUND_HALF_UP rounds ties away from zero for negative values too (-2.5 -> -3),
    # which is .NET's MidpointRounding.AwayFromZero. MAX_PREC makes every product exact (a
    # result is never rounded to a precision, so a product has exactly its factors' digits):
    # the decimal module's own recipe for exact arithmetic, and no per-call context to build.
    traps = [InvalidOperation, DivisionByZero, Overflow]
    return Context(
        prec=MAX_PREC,
        rounding=ROUND_HALF_UP,
        Emin=MIN_EMIN,
        Emax=MAX_EMAX,
        traps=traps if inexact else [*traps, Inexact],
    )


# Shared, never reconfigured: an operation only sets the context's flags, which nothing reads;
# traps fire from the operation's own outcome.
_EXACT = _context(inexact=False)
_ROUNDING = _context(inexact=True)
_ONE = Decimal(1)
_QUANTA = {LEDGER_SCALE: _ONE.scaleb(-LEDGER_SCALE)}


def exact_product(*factors: Decimal) -> Decimal:
    """The mathematically exact product (Inexact is trapped: it cannot happen at MAX_PREC)."""
    result = _ONE
    for factor in factors:
        result = _EXACT.multiply(result, factor)
    return result


def round_half_away(value: Decimal, places: int = LEDGER_SCALE) -> Decimal:
    """Round to `places` decimals, ties away from zero (`Math.Round(x, 6, AwayFromZero)`)."""
    # The rounding itself is the only inexact step, so Inexact is not trapped here.
    return value.quantize(_QUANTA.get(places) or _ONE.scaleb(-places), context=_ROUNDING)


def to_ledger_numeric(value: Decimal, column: str) -> Decimal:
    """`value` as stored in a NUMERIC(18,6) column: 6 places half away from zero, ≤ 12 digits."""
    rounded = value.quantize(_QUANTA[LEDGER_SCALE], context=_ROUNDING)
    if not -_LEDGER_LIMIT < rounded < _LEDGER_LIMIT:
        raise LedgerValueError(
            f"{column} {value} does not fit NUMERIC({LEDGER_PRECISION},{LEDGER_SCALE}) "
            f"(at most {LEDGER_PRECISION - LEDGER_SCALE} integer digits)"
        )
    # A negative input that rounds to zero would otherwise be stored as -0.000000.
    return rounded if rounded else rounded.copy_abs()
