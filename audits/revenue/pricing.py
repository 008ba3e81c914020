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
from audits.revenue.weights import MissingWeightsError

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
    if "dx" in original and "dx" in audited:
        parts = change_parts(original, audited, out.loc[out["drg_changed"], [key]], key=key)
        for column in ("auditor_changes", "grouper_effects"):
            out[column] = [_as_list(v) for v in out[key].map(parts[column]).astype("object")]
    return out


def _as_list(value) -> list:
    """A token list cell (a list, or an Arrow list pandas inferred) as a plain list; [] when missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return []
    return [str(v) for v in value]


def _levels(side: pd.DataFrame, key: str) -> pd.DataFrame:
    """(key, code, level): MCC / CC / PX as the grouper used the code on this side."""
    tokens = _tokens(side, SEVERITY_LISTS, key)
    split = tokens["token"].str.rsplit(":", n=1, expand=True) if len(tokens) else pd.DataFrame(columns=[0, 1])
    return pd.DataFrame({key: tokens[key].to_numpy(), "code": split[0].to_numpy(), "level": split[1].to_numpy()}
                        ).drop_duplicates([key, "code"])


def _codes(side: pd.DataFrame, column: str, key: str) -> pd.DataFrame:
    """(key, code, position) from a list column, position 1 first; a code listed twice counts once."""
    lists = [[] if v is None or v is pd.NA or isinstance(v, float) else [str(c) for c in v]
             for v in side[column].astype("object")]
    long = pd.DataFrame({key: side[key].to_numpy(), column: pd.Series(lists, dtype="object")})
    long = long.explode(column).dropna(subset=[column]).rename(columns={column: "code"})
    long["code"] = long["code"].astype(str)
    long["position"] = long.groupby(key).cumcount() + 1
    return long.drop_duplicates([key, "code"])


def change_parts(original: pd.DataFrame, audited: pd.DataFrame, claims: pd.DataFrame, *, key: str = "claim_id"
                 ) -> pd.DataFrame:
    """What moved each claim's DRG, in two parts (one list of tokens per claim, indexed by `key`).

    `auditor_changes`: what the auditor changed, code by code, each with the CC/MCC level the grouper
    gave it on its side (none when it did not count): `principal OLD>NEW`; `-CODE:LEVEL` a diagnosis
    removed; `+CODE:LEVEL` added; `OLD:LEVEL>NEW:LEVEL` a code replaced by one of the same 3-character
    category; `-CODE:PX` / `+CODE:PX` a procedure (PX when it set the DRG); `discharge_status A>B`.
    The principal's own code is only in the `principal` token.

    `grouper_effects`: codes the auditor kept whose CC/MCC role changed as a consequence:
    `-CODE:LEVEL (MCC present)` a CC that no longer counts once an MCC is on the claim;
    `-CODE:LEVEL (now principal)` a secondary that became principal (a principal is never its own CC);
    `+CODE:LEVEL (no longer principal)` a principal that became a secondary and now counts;
    `+CODE:CC (MCC gone)`; plain `-CODE:LEVEL` / `+CODE:LEVEL` otherwise (e.g. a CC excluded by the
    new principal, or a procedure that sets the DRG only with the new principal).

    Sides: one row per claim with `dx` and `px` lists (principal first) and the grouper's `mcc_codes`,
    `cc_codes`, `drg_px_codes`; `claims`: the keys to explain (those whose DRG changed)."""
    sides = {}
    for name, side in (("original", original), ("audited", audited)):
        side = side.merge(claims, on=key)
        dx = _codes(side, "dx", key).merge(_levels(side, key), on=[key, "code"], how="left")
        px = _codes(side, "px", key) if "px" in side else pd.DataFrame(columns=[key, "code", "position"])
        px = px.merge(_levels(side, key).query("level == 'PX'"), on=[key, "code"], how="left")
        principal = dx[dx["position"] == 1].set_index(key)["code"]
        has_mcc = dx.groupby(key)["level"].agg(lambda s: (s == "MCC").any())
        sides[name] = {"dx": dx, "px": px, "principal": principal, "has_mcc": has_mcc}
    o, a = sides["original"], sides["audited"]
    tokens = []  # (key, order, token)

    def token(code, level) -> pd.Series:
        return code + level.map(lambda v: f":{v}" if isinstance(v, str) and v else "")

    o_p, a_p = o["principal"].rename("o_p"), a["principal"].rename("a_p")
    principals = pd.concat([o_p, a_p], axis=1).reset_index()
    moved = principals[principals["o_p"].fillna("-") != principals["a_p"].fillna("-")]
    tokens.append(pd.DataFrame({key: moved[key], "order": 0, "sort": 0,
                                "token": "principal " + moved["o_p"].fillna("-") + ">" + moved["a_p"].fillna("-")}))

    both = o["dx"].merge(a["dx"], on=[key, "code"], how="outer", suffixes=("_o", "_a"), indicator=True)
    both = both.merge(principals, on=key, how="left")
    removed = both[(both["_merge"] == "left_only") & (both["code"] != both["o_p"])].copy()
    added = both[(both["_merge"] == "right_only") & (both["code"] != both["a_p"])].copy()
    # a removed and an added code of one category, in position order, are one replacement
    def numbered(frame: pd.DataFrame, position: str) -> pd.DataFrame:
        frame = frame.assign(category=frame["code"].str[:3]).sort_values([key, position])
        return frame.assign(nth=frame.groupby([key, "category"]).cumcount())

    removed, added = numbered(removed, "position_o"), numbered(added, "position_a")
    pairs = removed.merge(added, on=[key, "category", "nth"], suffixes=("_old", "_new"))
    paired = pairs[[key, "category", "nth"]].assign(_paired=True)
    removed = removed.merge(paired, on=[key, "category", "nth"], how="left")
    removed = removed[removed["_paired"].isna()]
    added = added.merge(paired, on=[key, "category", "nth"], how="left")
    added = added[added["_paired"].isna()]
    tokens.append(pd.DataFrame({key: removed[key], "order": 1, "sort": removed["position_o"],
                                "token": "-" + token(removed["code"], removed["level_o"])}))
    tokens.append(pd.DataFrame({key: added[key], "order": 2, "sort": added["position_a"],
                                "token": "+" + token(added["code"], added["level_a"])}))
    tokens.append(pd.DataFrame({key: pairs[key], "order": 3, "sort": pairs["position_o_old"],
                                "token": token(pairs["code_old"], pairs["level_o_old"]) + ">"
                                + token(pairs["code_new"], pairs["level_a_new"])}))
    px = o["px"].merge(a["px"], on=[key, "code"], how="outer", suffixes=("_o", "_a"), indicator=True)
    for side, sign, order in (("left_only", "-", 4), ("right_only", "+", 5)):
        sub = px[px["_merge"] == side]
        level = sub["level_o"] if side == "left_only" else sub["level_a"]
        tokens.append(pd.DataFrame({key: sub[key], "order": order, "sort": 0,
                                    "token": sign + token(sub["code"], level)}))
    if "discharge_status" in original and "discharge_status" in audited:
        status = original[[key, "discharge_status"]].merge(audited[[key, "discharge_status"]], on=key,
                                                            suffixes=("_o", "_a")).merge(claims, on=key)
        o_s, a_s = status["discharge_status_o"].astype("string"), status["discharge_status_a"].astype("string")
        changed = (o_s != a_s).fillna(False)
        tokens.append(pd.DataFrame({key: status.loc[changed, key], "order": 6, "sort": 0,
                                    "token": "discharge_status " + o_s[changed].fillna("-") + ">"
                                    + a_s[changed].fillna("-")}))
    auditor = _collect(tokens, key)

    effects = []
    kept = both[both["_merge"] == "both"].copy()
    kept["level_o"], kept["level_a"] = kept["level_o"].fillna(""), kept["level_a"].fillna("")
    kept = kept[kept["level_o"] != kept["level_a"]]
    kept["mcc_a"] = kept[key].map(a["has_mcc"]).fillna(False).astype(bool)
    kept["mcc_o"] = kept[key].map(o["has_mcc"]).fillna(False).astype(bool)
    lost = kept[(kept["level_o"] != "") & (kept["level_a"] == "")]
    why = pd.Series("", index=lost.index, dtype="object")
    why[(lost["level_o"] == "CC") & lost["mcc_a"]] = " (MCC present)"
    why[lost["code"] == lost["a_p"]] = " (now principal)"
    effects.append(pd.DataFrame({key: lost[key], "order": 0, "sort": lost["position_o"],
                                 "token": "-" + lost["code"] + ":" + lost["level_o"] + why}))
    gained = kept[(kept["level_a"] != "") & (kept["level_o"] == "")]
    why = pd.Series("", index=gained.index, dtype="object")
    why[(gained["level_a"] == "CC") & gained["mcc_o"] & ~gained["mcc_a"]] = " (MCC gone)"
    why[gained["code"] == gained["o_p"]] = " (no longer principal)"
    effects.append(pd.DataFrame({key: gained[key], "order": 1, "sort": gained["position_a"],
                                 "token": "+" + gained["code"] + ":" + gained["level_a"] + why}))
    swapped = kept[(kept["level_a"] != "") & (kept["level_o"] != "")]
    effects.append(pd.DataFrame({key: swapped[key], "order": 2, "sort": swapped["position_a"],
                                 "token": swapped["code"] + ":" + swapped["level_o"] + ">" + swapped["level_a"]}))
    kept_px = px[px["_merge"] == "both"]
    kept_px = kept_px[kept_px["level_o"].fillna("") != kept_px["level_a"].fillna("")]
    effects.append(pd.DataFrame({key: kept_px[key], "order": 3, "sort": 0,
                                 "token": np.where(kept_px["level_a"].notna(), "+", "-") + kept_px["code"] + ":PX"}))
    return pd.DataFrame({"auditor_changes": auditor, "grouper_effects": _collect(effects, key)})


def _collect(parts: list[pd.DataFrame], key: str) -> pd.Series:
    frame = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else \
        pd.DataFrame(columns=[key, "order", "sort", "token"])
    frame = frame.assign(sort=pd.to_numeric(frame["sort"], errors="coerce").fillna(0))
    return frame.sort_values([key, "order", "sort"], kind="stable").groupby(key, sort=False)["token"].agg(list)


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
    deltas (both positive); net_amount = underpaid - overpaid. Rates are shares of the audited
    claims that could be regrouped: a `not_grouped` claim (discharged under an MS-DRG version the
    grouper does not carry) is in no rate, counted in `not_grouped_claims`; not_priced claims count
    in the denominator and in neither numerator of up/downgrade.
    """
    audited, not_grouped = len(frame), 0
    if "direction" in frame and len(frame):
        grouped = (frame["direction"] != "not_grouped").to_numpy()
        not_grouped = int((~grouped).sum())
        frame = frame[grouped]
    cents = _cents(frame["delta"]) if len(frame) else pd.Series([], dtype="Int64")
    under_amount, over_amount = underpaid_overpaid(frame["delta"] if len(frame) else cents)
    under, over = round(under_amount * 100), round(over_amount * 100)
    n = len(frame)

    def share(mask: pd.Series) -> float | None:
        return round(float(mask.sum()) / n, 6) if n else None

    return {
        "audited_claims": audited,
        "underpaid_amount": under / 100,
        "overpaid_amount": over / 100,
        "net_amount": (under - over) / 100,
        "drg_change_rate": share(frame["drg_changed"].astype(bool)) if n else None,
        "drg_upgrade_rate": share((cents > 0).fillna(False)) if n else None,
        "drg_downgrade_rate": share((cents < 0).fillna(False)) if n else None,
        "not_priced_claims": int(cents.isna().sum()),
        "not_grouped_claims": not_grouped,
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
