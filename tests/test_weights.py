"""Table 5 parsing and the weights by fiscal year (figures read off the published CMS file)."""

from pathlib import Path

import pandas as pd
import pytest

from audits.errors import InputError
from audits.revenue.weights import (
                                    MissingWeightsError,
                                    drg_family,
                                    load_weights,
                                    packaged_weights,
                                    parse_table5,
                                    spelled_out_title,
                                    table5_fiscal_year,
                                    weights_sources,
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


REFERENCE = CMS_FILE.parent


@pytest.mark.parametrize("fiscal_year, drg, weight", [
    (2024, "871", 1.9826), (2024, "470", 1.8817),
    (2025, "291", 1.3048), (2025, "292", 0.8612), (2025, "293", 0.5487),
    (2023, "291", 1.2798), (2023, "292", 0.8628), (2023, "293", 0.5603),
    (2020, "263", 2.3591),  # corrected by CMS's correction notice (the Final Rule said 2.3590)
    (2026, "291", 1.2838),
])
def test_shipped_weights_known_values(fiscal_year, drg, weight):
    """Published values (CMS Table 5 of each year, as listed in the reference data's README)."""
    assert weight_of(load_weights([fiscal_year]), drg) == weight


def test_every_year_from_fy2016_ships():
    weights = load_weights(range(2016, 2027))
    per_year = weights.groupby("fiscal_year")["drg"].count().to_dict()
    # DRG lines in each year's Table 5 (the VA copy and CMS's FY2026 file, counted with wc -l less the header).
    assert per_year == {2016: 758, 2017: 757, 2018: 754, 2019: 761, 2020: 761, 2021: 767, 2022: 767,
                        2023: 767, 2024: 766, 2025: 773, 2026: 772}
    # Read off the FY2016 file by hand: "291  05  MED  HEART FAILURE & SHOCK W MCC  1.4809  4.6  5.8".
    fy2016 = weights[weights["fiscal_year"] == 2016]
    row = fy2016[fy2016["drg"] == "291"].iloc[0]
    assert row["title"] == "HEART FAILURE & SHOCK W MCC"
    assert row["weight"] == 1.4809 and row["gmlos"] == 4.6 and row["amlos"] == 5.8


@pytest.mark.skipif(not (REFERENCE / "cms_fy2024_table5_msdrg_weights.tsv").exists(),
                    reason="CMS reference files not available")
@pytest.mark.parametrize("fiscal_year", range(2016, 2026))
def test_shipped_year_is_the_reference_file(fiscal_year):
    source = parse_table5(REFERENCE / f"cms_fy{fiscal_year}_table5_msdrg_weights.tsv")
    assert source.attrs["fiscal_year"] == fiscal_year  # from the file name: the copy has no title lines
    shipped = packaged_weights(fiscal_year)
    for column in ("drg", "mdc", "type", "title", "weight", "gmlos", "amlos"):
        assert source[column].equals(shipped[column]), column


def test_weights_folder_overrides_a_shipped_year_and_adds_fy2027(tmp_path):
    """A UTF-8 copy in the reference layout (no title; year from the file name) for FY2025 replaces
    the shipped FY2025; a CMS-layout FY2027 file (cp1252, title) adds the year."""
    (tmp_path / "table5_fy2025.tsv").write_text(
        "MS-DRG\tMDC\tTYPE\tMS-DRG Title\tWeights\tGeometric mean LOS\tArithmetic mean LOS\n"
        "291\t05\tMED\tHEART FAILURE AND SHOCK WITH MCC\t1.5000\t3.9\t5.0\n", encoding="utf-8")
    (tmp_path / "FY2027_table5.txt").write_bytes((
        '"TABLE 5.\u2014LIST OF MS-DRGS \u2014FY 2027 Final Rule"\t\t\r\n'
        "MS-DRG \tMDC\tTYPE\tMS-DRG Title\tWeights - Before Cap\tWeights - 10% Cap Applied \t"
        "Geometric mean LOS\tArithmetic mean LOS\r\n"
        "291\t05\tMED\tHEART FAILURE AND SHOCK WITH MCC\t1.2900\t1.2900\t3.8\t4.9\r\n").encode("cp1252"))
    sources = weights_sources({2024: 3, 2025: 2, 2027: 1}, tmp_path)
    assert sources == {2024: "shipped", 2025: f"file {tmp_path / 'table5_fy2025.tsv'}",
                       2027: f"file {tmp_path / 'FY2027_table5.txt'}"}
    weights = load_weights([2024, 2025, 2027], extra_dir=tmp_path)
    by_year = weights[weights["drg"] == "291"].set_index("fiscal_year")["weight"].to_dict()
    assert by_year == {2024: 1.2839, 2025: 1.5, 2027: 1.29}


def test_weights_folder_that_does_not_exist_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="weights folder does not exist"):
        load_weights([2026], extra_dir=tmp_path / "nope")


def test_table5_without_year_in_title_or_name_is_refused(tmp_path):
    (tmp_path / "weights.tsv").write_text(
        "MS-DRG\tMDC\tTYPE\tMS-DRG Title\tWeights\tGeometric mean LOS\tArithmetic mean LOS\n"
        "291\t05\tMED\tHEART FAILURE AND SHOCK WITH MCC\t1.5000\t3.9\t5.0\n", encoding="utf-8")
    with pytest.raises(InputError, match="rename it with the year"):
        load_weights([2026], extra_dir=tmp_path)


def test_family_and_spelled_out_title_read_both_title_styles():
    assert drg_family("HEART FAILURE & SHOCK W MCC") == "HEART FAILURE & SHOCK"
    assert drg_family("SIMPLE PNEUMONIA & PLEURISY W/O CC/MCC") == "SIMPLE PNEUMONIA & PLEURISY"
    assert drg_family("HEART FAILURE AND SHOCK WITHOUT CC/MCC") == "HEART FAILURE AND SHOCK"
    assert spelled_out_title("SIMPLE PNEUMONIA & PLEURISY W/O CC/MCC") == "SIMPLE PNEUMONIA & PLEURISY WITHOUT CC/MCC"
    assert spelled_out_title("INTRACRANIAL HEMORRHAGE OR CEREBRAL INFARCTION W CC OR TPA IN 24 HRS") == (
        "INTRACRANIAL HEMORRHAGE OR CEREBRAL INFARCTION WITH CC OR TPA IN 24 HRS")


def test_weights_sources_can_report_a_missing_year_instead_of_raising():
    assert weights_sources([2026, 2031], missing_ok=True) == {2026: "shipped", 2031: "missing"}
    with pytest.raises(MissingWeightsError):
        weights_sources([2026, 2031])
