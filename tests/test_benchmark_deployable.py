"""benchmarks/deployable_size.py's pure parts: configurations, the ratio table, the Markdown."""
import pytest

from benchmarks.deployable_size import (
    Measured,
    ModelSize,
    cpu_model,
    parse_configs,
    parse_variants,
    render_markdown,
    table,
)
from edgeship.detection.latency import LatencyStats


def stats(median: float, threads: int = 1) -> LatencyStats:
    return LatencyStats(median=median, p90=median * 1.1, runs=50, warmup=5, threads=threads,
                        mean=median, min=median * 0.9, ci=(median * 0.95, median * 1.05), blocks=10,
                        confidence=0.95)


def measured(config: str, variant: str, size: int, lat1: float, lat2: float,
             int8: bool | None = None) -> Measured:
    return Measured(config, variant, size, stats(lat1), stats(lat2, threads=2), int8)


ROWS = [measured("α 0.35 @ 160", "fp32", 2048, 0.5, 0.4),
        measured("α 0.35 @ 160", "full_int8", 1024, 0.4, 0.3, True),
        measured("α 1 @ 320", "fp32", 10240, 40.0, 24.0),
        measured("α 1 @ 320", "full_int8", 3072, 10.0, 6.0, False)]


def test_parse_configs():
    assert parse_configs("0.35@160, 1.0@320") == [ModelSize(0.35, 160), ModelSize(1.0, 320)]
    assert ModelSize(1.0, 320).label == "α 1 @ 320"
    for bad in ("1.0", "a@320", "1.0@x", ""):
        with pytest.raises(ValueError, match="ALPHA@INPUT"):
            parse_configs(bad)


def test_ratios_are_to_the_fp32_of_the_same_configuration():
    header, rows = table(ROWS)
    assert header[:4] == ["config", "variant", "size (KB)", "size ÷ fp32"] and "2T ÷ fp32" in header
    small, big = rows[1], rows[3]
    assert small[2:4] == ["1.0", "0.500"] and small[5] == "0.800" and small[7] == "0.750"
    assert big[2:4] == ["3.0", "0.300"] and big[5] == "0.250" and big[7] == "0.250"
    assert big[4] == "10.000 [9.500, 10.500]"
    assert [r[8] for r in rows] == ["—", "yes", "—", "no"]


def test_no_fp32_gives_no_ratio():
    _, rows = table([measured("α 1 @ 320", "full_int8", 3072, 10.0, 6.0)])
    assert rows[0][3] == rows[0][5] == rows[0][7] == "—"


def test_cpu_model():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n"
    assert cpu_model(text) == "AMD EPYC 7B13"
    assert cpu_model("processor : 0\n") == "unknown"


def test_markdown_has_command_machine_and_rows():
    md = render_markdown(ROWS, machine={"CPU": "AMD EPYC 7B13", "cores": "2"},
                         command="python -m benchmarks.deployable_size", settings={"epochs": 1},
                         notes=["brief training"])
    assert "`python -m benchmarks.deployable_size`" in md
    assert "CPU AMD EPYC 7B13, cores 2" in md and "epochs=1" in md and "- brief training" in md
    assert md.count("| α 1 @ 320 |") == 2 and "| 0.250 |" in md


def test_parse_variants_puts_fp32_first_and_refuses_what_it_cannot_build():
    assert parse_variants("full_int8, float16,full_int8") == ["fp32", "full_int8", "float16"]
    assert parse_variants("fp32,full_int8_pt") == ["fp32", "full_int8_pt"]
    for bad in ("qat_int8", "int4"):
        with pytest.raises(ValueError, match="float model"):
            parse_variants(bad)
