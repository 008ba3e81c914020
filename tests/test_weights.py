"""Table 5 parsing and the weights by fiscal year (figures read off the published CMS file)."""

from pathlib import Path

import pandas as pd
import pytest

from audits.weights import (
    MissingWeightsError,
    load_weights,
    packaged_weights,
    parse_table5,
    table5_fiscal_year,
)

# ../shared/reference beside the checkout (CI lays shared/ there too), as CMS publishes it.
CMS_FILE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cms_fy2026_table5_msdrg_weights.txt"
needs_cms_file = pytest.mark.skipif(not CMS_FILE.exists(), reason="CMS reference file not available")


def weight_of(frame: pd.DataFrame, drg: str, column: str = "weight") -> float:
    return float(frame.loc[frame["drg"] == drg, column].iloc[0])


@needs_cms_file
def test_parse_cms_table5_fy2026():
    table = parse_table5(CMS_FILE)
    assert table.attrs["fiscal_year"] == 2026
    assert len(table) == 772  # DRG lines in the published file
    assert weight_of(table, "291") == 1.2838
    assert weight_of(table, "292") == 0.8490
    assert weight_of(table, "293") == 0.5660
    first = table.iloc[0]
    assert first["drg"] == "001" and first["mdc"] == "PRE" and first["type"] == "SURG"
    assert first["title"] == "HEART TRANSPLANT OR IMPLANT OF HEART ASSIST SYSTEM WITH MCC"
    # DRG 010: the 10% cap changes the weight; CMS pays on the capped column.
    assert weight_of(table, "010", "weight_before_cap") == 3.0699
    assert weight_of(table, "010") == 7.1757
    # Quoted titles with commas, and blank MDCs.
    assert table.loc[table["drg"] == "282", "title"].iloc[0] == (
        "ACUTE MYOCARDIAL INFARCTION, DISCHARGED ALIVE WITHOUT CC/MCC")
    assert pd.isna(table.loc[table["drg"] == "981", "mdc"].iloc[0])
    assert weight_of(table, "291", "gmlos") == 3.8 and weight_of(table, "291", "amlos") == 5.0
    # 998/999 carry no weight ('.'): missing, never zero.
    assert table.loc[table["drg"].isin(["998", "999"]), "weight"].isna().all()
    assert bool(table.loc[table["drg"] == "291", "post_acute"].iloc[0]) is True


@needs_cms_file
def test_packaged_csv_is_the_cms_file():
    assert parse_table5(CMS_FILE).equals(packaged_weights(2026))


@needs_cms_file
def test_header_found_by_content_and_fiscal_year_from_title(tmp_path):
    text = CMS_FILE.read_bytes().decode("cp1252")
    shifted = "Some preamble line\r\n\r\n" + text.replace("FY 2026 Final Rule", "FY 2027 Final Rule")
    shifted = shifted.replace("\t1.2838\t1.2838\t", "\t1.3000\t1.3000\t")
    (tmp_path / "table5_fy2027.txt").write_bytes(shifted.encode("cp1252"))
    (tmp_path / "notes.txt").write_text("not a table")
    assert table5_fiscal_year(tmp_path / "table5_fy2027.txt") == 2027
    weights = load_weights([2026, 2027], extra_dir=tmp_path)
    assert list(weights.columns) == ["fiscal_year", "drg", "weight", "gmlos", "amlos", "title", "mdc", "type"]
    by_year = weights[weights["drg"] == "291"].set_index("fiscal_year")["weight"]
    assert by_year[2026] == 1.2838 and by_year[2027] == 1.3000


def test_table5_without_a_cap_column():
    text = ('"TABLE 5.-LIST OF MS-DRGS-FY 2022 Final Rule"\t\t\t\t\t\t\t\t\r\n'
            "MS-DRG\tFY 2022 Final Post-Acute DRG\tFY 2022 Final Special Pay DRG\tMDC\tTYPE\tMS-DRG Title\t"
            "Weights\tGeometric mean LOS\tArithmetic mean LOS\r\n"
            "291\tYes\tNo\t05\tMED\tHEART FAILURE AND SHOCK WITH MCC\t1.3454\t3.9\t4.9\r\n")
    table = parse_table5(text)
    assert table.attrs["fiscal_year"] == 2022
    assert weight_of(table, "291") == 1.3454 and weight_of(table, "291", "weight_before_cap") == 1.3454


def test_missing_fiscal_year_names_year_count_and_folder(tmp_path):
    with pytest.raises(MissingWeightsError) as raised:
        load_weights({2026: 10, 2027: 1234}, extra_dir=tmp_path)
    message = str(raised.value)
    assert "FY 2027" in message and "1,234 claims" in message and str(tmp_path) in message
    assert "FY 2026 (" not in message  # shipped: not missing
    assert raised.value.fiscal_years == [2027]


def test_fy2026_ships_with_the_package():
    weights = load_weights([2026])
    assert set(weights["fiscal_year"]) == {2026}
    assert weight_of(weights, "871") == 1.9425
