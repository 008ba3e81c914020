"""Payment per claim side and the revenue delta of an audit, exact to the cent.

payment = relative weight (Table 5, "10% cap applied") x facility base rate x payer multiplier,
rounded half up to the cent with Decimal arithmetic. Money is kept as float dollars that are
exact cent values; sums go through integer cents so totals are exact too.

Default base rate: USD 7,276.76 = the FY 2026 IPPS national operating standardized amount with the
full update (hospital submits quality data and is a meaningful EHR user), USD 6,752.61, plus the
FY 2026 capital federal rate, USD 524.15 (CMS-1833-F, FY 2026 IPPS final rule; figures as summarised
by the Michigan Health & Hospital Association, https://www.mha.org/?p=28660). It is a national
unadjusted rate: wage index 1.0, no IME, DSH, outlier or new-technology payments. Set each
facility's own blended rate in the rates file for real figures.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd

from audits.errors import InputError
from audits.weights import MissingWeightsError

DEFAULT_BASE_RATE = Decimal("7276.76")
DEFAULT_BASE_RATE_SOURCE = (
    "FY 2026 IPPS final rule (CMS-1833-F): national operating standardized amount, full update, "
    "$6,752.61 + capital federal rate $524.15; wage index 1.0, no IME/DSH/outliers"
)
CENT = Decimal("0.01")
_KNOWN_KEYS = {"default_base_rate", "base_rate_override", "default_payer_multiplier", "facility_base_rates",
               "payer_multipliers"}


@dataclass(frozen=True)
class RateConfig:
    """Base rates per facility, payer multipliers, and an optional what-if override of every base rate."""

    default_base_rate: Decimal = DEFAULT_BASE_RATE
    facility_base_rates: dict[str, Decimal] = field(default_factory=dict)
    payer_multipliers: dict[str, Decimal] = field(default_factory=dict)
    default_payer_multiplier: Decimal = Decimal(1)
    base_rate_override: Decimal | None = None
    source: str = "default"

    def base_rate(self, facility_id: object) -> Decimal:
        if self.base_rate_override is not None:
            return self.base_rate_override
        return self.facility_base_rates.get(str(facility_id), self.default_base_rate)

    def payer_multiplier(self, payer: object) -> Decimal:
        if payer is None or (isinstance(payer, float) and payer != payer):
            return self.default_payer_multiplier
        return self.payer_multipliers.get(str(payer), self.default_payer_multiplier)

    def with_override(self, base_rate: float | str | Decimal | None) -> RateConfig:
        """The same configuration with every facility's base rate replaced (`--base-rate N`)."""
        value = None if base_rate is None else _money(base_rate, "base_rate_override", self.source)
        return RateConfig(self.default_base_rate, self.facility_base_rates, self.payer_multipliers,
                          self.default_payer_multiplier, value, self.source)

    def summary(self) -> dict:
        """What to record in the run summary."""
        return {
            "base_rate": float(self.base_rate_override) if self.base_rate_override is not None else None,
            "default_base_rate": float(self.default_base_rate),
            "facility_base_rates": len(self.facility_base_rates),
            "payer_multipliers": len(self.payer_multipliers),
            "rates_source": self.source if self.base_rate_override is None else (
                f"--base-rate {self.base_rate_override:.2f} for every facility (what-if)"
                + ("" if self.source == "default" else f"; payer multipliers from {self.source}")),
        }


def _decimal(value: object, key: str, source: str) -> Decimal:
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InputError(f"{key} must be a number, not {value!r}", file=source) from None
    if isinstance(value, bool) or not number.is_finite() or number <= 0:
        raise InputError(f"{key} must be a positive number, not {value!r}", file=source)
    return number


def _money(value: object, key: str, source: str) -> Decimal:
    number = _decimal(value, key, source)
    if number != number.quantize(CENT):
        raise InputError(f"{key} is a rate in dollars and cents: {value!r} has more than 2 decimals", file=source)
    return number


def load_rate_config(path: str | Path | None = None, base_rate_override: float | str | Decimal | None = None
                     ) -> RateConfig:
    """Read the rates file (TOML), or the documented default without one.

    ```toml
    default_base_rate = 7276.76          # dollars; default: the FY 2026 national rate (module doc)
    default_payer_multiplier = 1.0
    # base_rate_override = 9000.00       # what-if: replaces every facility's rate

    [facility_base_rates]
    "390111" = 8123.45

    [payer_multipliers]
    "Commercial A" = 1.35
    ```
    Numbers are read as decimals (no binary rounding).
    """
    if path is None:
        config = RateConfig()
    else:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle, parse_float=Decimal)
        except FileNotFoundError:
            raise InputError("rates file not found", file=source) from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"not valid TOML: {exc}", file=source) from None
        unknown = set(data) - _KNOWN_KEYS
        if unknown:
            raise InputError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}", file=source)
        facilities = data.get("facility_base_rates", {})
        payers = data.get("payer_multipliers", {})
        if not isinstance(facilities, dict) or not isinstance(payers, dict):
            raise InputError("facility_base_rates and payer_multipliers must be tables", file=source)
        override = data.get("base_rate_override")
        config = RateConfig(
            default_base_rate=_money(data.get("default_base_rate", DEFAULT_BASE_RATE), "default_base_rate", source),
            facility_base_rates={str(k): _money(v, f"facility_base_rates.{k}", source) for k, v in facilities.items()},
            payer_multipliers={str(k): _decimal(v, f"payer_multipliers.{k}", source) for k, v in payers.items()},
            default_payer_multiplier=_decimal(data.get("default_payer_multiplier", 1), "default_payer_multiplier",
                                              source),
            base_rate_override=None if override is None else _money(override, "base_rate_override", source),
            source=source,
        )
    return config.with_override(base_rate_override) if base_rate_override is not None else config


def round_cents(amount: Decimal) -> Decimal:
    """Half up to the cent (CMS pricers and finance round half up, not to even)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def price_claims(frame: pd.DataFrame, weights: pd.DataFrame, rate_config: RateConfig, *,
                 drg_col: str = "drg", fiscal_year_col: str = "fiscal_year", facility_col: str = "facility_id",
                 payer_col: str = "payer") -> pd.DataFrame:
    """Add weight, base_rate, payer_multiplier and payment to one row per claim side.

    `weights` is `load_weights(...)` (fiscal_year, drg, weight, ...). A fiscal year missing from
    `weights` raises MissingWeightsError (with the number of claims affected); a DRG without a weight
    (no DRG, 998/999 ungroupable) gets weight and payment NaN: not priced, never a silent zero.
    The arithmetic runs once per distinct (weight, base rate, multiplier) in Decimal.
    """
    out = frame.copy()
    years = pd.to_numeric(out[fiscal_year_col], errors="coerce")
    known = set(pd.to_numeric(weights["fiscal_year"]).astype(int))
    missing = years[years.notna() & ~years.isin(known)].astype(int).value_counts().to_dict()
    if missing:
        raise MissingWeightsError(missing.keys(), missing)
    table = weights[["fiscal_year", "drg", "weight"]].copy()
    table["fiscal_year"] = table["fiscal_year"].astype("int64")
    table["drg"] = table["drg"].astype(str)
    keys = pd.DataFrame({"fiscal_year": years.astype("Int64"),
                         "drg": out[drg_col].astype("string").str.strip().str.zfill(3)})
    out["weight"] = keys.merge(table.astype({"fiscal_year": "Int64", "drg": "string"}),
                               on=["fiscal_year", "drg"], how="left")["weight"].to_numpy(dtype=float)

    facility = out[facility_col] if facility_col in out else pd.Series(None, index=out.index, dtype="object")
    payer = out[payer_col] if payer_col in out else pd.Series(None, index=out.index, dtype="object")
    base = facility.map(rate_config.base_rate)
    multiplier = payer.map(rate_config.payer_multiplier)
    out["base_rate"] = base.map(float).to_numpy(dtype=float)
    out["payer_multiplier"] = multiplier.map(float).to_numpy(dtype=float)

    combos = pd.DataFrame({"weight": out["weight"].to_numpy(), "base": base.map(str).to_numpy(),
                           "multiplier": multiplier.map(str).to_numpy()})
    codes, distinct = pd.factorize(pd.MultiIndex.from_frame(combos.fillna({"weight": -1.0})))
    payments = np.array([
        np.nan if w < 0 else float(round_cents(Decimal(repr(float(w))) * Decimal(b) * Decimal(m)))
        for w, b, m in distinct
    ], dtype=float)
    out["payment"] = payments[codes] if len(codes) else np.array([], dtype=float)
    return out


def _cents(values: pd.Series) -> pd.Series:
    """Dollar amounts that are exact cent values -> integer cents (nullable)."""
    return (pd.to_numeric(values, errors="coerce") * 100).round().astype("Int64")


def _tokens(frame: pd.DataFrame, columns: dict[str, str], key: str) -> pd.DataFrame:
    """One row per (claim, 'CODE:LEVEL' token) from list columns, e.g. mcc_codes -> 'J9601:MCC'."""
    parts = []
    for column, level in columns.items():
        if column not in frame:
            continue
        long = frame[[key, column]].explode(column).dropna(subset=[column])
        parts.append(pd.DataFrame({key: long[key].to_numpy(), "token": long[column].astype(str) + f":{level}"}))
    if not parts:
        return pd.DataFrame({key: pd.Series(dtype="object"), "token": pd.Series(dtype="object")})
    return pd.concat(parts, ignore_index=True).drop_duplicates()


SEVERITY_LISTS = {"mcc_codes": "MCC", "cc_codes": "CC", "drg_px_codes": "PX"}


def regroup_delta(original: pd.DataFrame, audited: pd.DataFrame, *, key: str = "claim_id") -> pd.DataFrame:
    """Per audited claim: both DRGs and payments, delta = audited - original, direction, drivers.

    Each side is one row per claim with `drg`, `payment` and, when present, `mdc`, `weight`,
    the grouper's `mcc_codes`, `cc_codes`, `drg_px_codes` (lists), `principal_dx` and
    `discharge_status`. direction: 'underpaid' (delta > 0, revenue lost), 'overpaid' (< 0),
    'unchanged', or 'not_priced' when either side has no payment (ungroupable or no weight).
    `change_drivers` (only when the DRG changed) lists what moved it, e.g. ['-J9601:MCC',
    '+N179:CC', '+5A1955Z:PX', 'principal I5023>I5022', 'discharge_status 01>20']: a code that set
    the severity (or a procedure that set the DRG) on one side and not on the other.
    """
    keep = [c for c in ("drg", "mdc", "weight", "payment", "principal_dx", "discharge_status") if c in original]
    both = original[[key, *keep]].merge(audited[[key, *[c for c in keep if c in audited]]], on=key, how="inner",
                                        suffixes=("_original", "_audited"), validate="one_to_one")
    rename = {f"{c}_original": f"original_{c}" for c in keep} | {f"{c}_audited": f"audited_{c}" for c in keep}
    out = both.rename(columns=rename)
    original_cents, audited_cents = _cents(out["original_payment"]), _cents(out["audited_payment"])
    delta_cents = audited_cents - original_cents
    out["delta"] = delta_cents.astype("Float64") / 100
    out["direction"] = np.select(
        [delta_cents.isna().to_numpy(dtype=bool, na_value=True),
         (delta_cents > 0).to_numpy(dtype=bool, na_value=False),
         (delta_cents < 0).to_numpy(dtype=bool, na_value=False)],
        ["not_priced", "underpaid", "overpaid"], default="unchanged")
    o_drg, a_drg = out["original_drg"].astype("string"), out["audited_drg"].astype("string")
    out["drg_changed"] = ((o_drg != a_drg).fillna(False) | (o_drg.isna() != a_drg.isna())).astype(bool)

    # Drivers, set-based: tokens on one side's severity lists and not on the other's.
    o_tok, a_tok = _tokens(original, SEVERITY_LISTS, key), _tokens(audited, SEVERITY_LISTS, key)
    changed_keys = out.loc[out["drg_changed"], [key]]
    o_tok, a_tok = o_tok.merge(changed_keys, on=key), a_tok.merge(changed_keys, on=key)
    removed = o_tok.merge(a_tok, on=[key, "token"], how="left", indicator=True)
    removed = removed[removed["_merge"] == "left_only"].assign(driver="-" + removed["token"])
    added = a_tok.merge(o_tok, on=[key, "token"], how="left", indicator=True)
    added = added[added["_merge"] == "left_only"].assign(driver="+" + added["token"])
    drivers = [removed[[key, "driver"]], added[[key, "driver"]]]
    for column, label in (("principal_dx", "principal"), ("discharge_status", "discharge_status")):
        if f"original_{column}" in out and f"audited_{column}" in out:
            o, a = out[f"original_{column}"].astype("string"), out[f"audited_{column}"].astype("string")
            moved = out["drg_changed"] & (o != a).fillna(False)
            drivers.append(pd.DataFrame({key: out.loc[moved, key].to_numpy(),
                                         "driver": (f"{label} " + o[moved].fillna("-") + ">"
                                                    + a[moved].fillna("-")).to_numpy()}))
    listed = pd.concat(drivers, ignore_index=True).groupby(key, sort=False)["driver"].agg(list)
    out["change_drivers"] = out[key].map(listed).map(lambda v: v if isinstance(v, list) else [])
    return out


def money_sum(values: pd.Series) -> float:
    """Sum of dollar amounts that are exact cents, exactly (through integer cents); NaN skipped."""
    cents = _cents(values) if len(values) else pd.Series([], dtype="Int64")
    return int(cents.sum()) / 100 if len(cents) else 0.0


def underpaid_overpaid(delta: pd.Series) -> tuple[float, float]:
    """underpaid_amount (sum of the positive deltas) and overpaid_amount (sum of the magnitudes of
    the negative ones), both positive, exact to the cent; unpriced (NaN) deltas are left out."""
    return money_sum(delta.where(delta > 0)), 0.0 - money_sum(delta.where(delta < 0)) + 0.0


def revenue_totals(frame: pd.DataFrame) -> dict:
    """Headline money figures over audited claims (one row per claim, from `regroup_delta`).

    underpaid_amount = sum of positive deltas; overpaid_amount = sum of the magnitudes of negative
    deltas (both positive); net_amount = underpaid - overpaid. Rates are shares of all audited claims
    (not_priced claims count in the denominator and in neither numerator of up/downgrade).
    """
    cents = _cents(frame["delta"]) if len(frame) else pd.Series([], dtype="Int64")
    under_amount, over_amount = underpaid_overpaid(frame["delta"] if len(frame) else cents)
    under, over = round(under_amount * 100), round(over_amount * 100)
    n = len(frame)

    def share(mask: pd.Series) -> float | None:
        return round(float(mask.sum()) / n, 6) if n else None

    return {
        "audited_claims": n,
        "underpaid_amount": under / 100,
        "overpaid_amount": over / 100,
        "net_amount": (under - over) / 100,
        "drg_change_rate": share(frame["drg_changed"].astype(bool)) if n else None,
        "drg_upgrade_rate": share((cents > 0).fillna(False)) if n else None,
        "drg_downgrade_rate": share((cents < 0).fillna(False)) if n else None,
        "not_priced_claims": int(cents.isna().sum()),
    }


def revenue_by(frame: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """revenue_totals per group (facility, service line, payer, coder, month, DRG family, ...)."""
    by = [by] if isinstance(by, str) else list(by)
    data = frame[by].copy()
    cents = _cents(frame["delta"])
    data["claims"] = 1
    data["changed"] = frame["drg_changed"].astype(bool).astype(int).to_numpy()
    data["upgraded"] = (cents > 0).fillna(False).astype(int).to_numpy()
    data["downgraded"] = (cents < 0).fillna(False).astype(int).to_numpy()
    data["underpaid_cents"] = cents.where(cents > 0, 0).fillna(0).astype("int64").to_numpy()
    data["overpaid_cents"] = (-cents).where(cents < 0, 0).fillna(0).astype("int64").to_numpy()
    grouped = data.groupby(by, dropna=False, sort=True).sum().reset_index()
    grouped["underpaid_amount"] = grouped.pop("underpaid_cents") / 100
    grouped["overpaid_amount"] = grouped.pop("overpaid_cents") / 100
    grouped["net_amount"] = (grouped["underpaid_amount"] * 100 - grouped["overpaid_amount"] * 100).round() / 100
    return grouped
