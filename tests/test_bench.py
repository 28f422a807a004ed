"""The benchmark runner (`python -m fastdl bench`): it checks answers, times every library,
reports the yardsticks, writes JSON, and can run loaded. Times are never asserted."""
import json

import pytest

from fastdl import bench
from fastdl.__main__ import main


def test_run_times_a_case_and_formats_a_table():
    result = bench.run(only=["conv2d 64x1x28x28->32 k3 s1 p1 f+b"], threads=1, repeats=1, log=None)
    assert result["threads"] == 1 and result["load"] == 0
    assert [row["name"] for row in result["rows"]] == ["conv2d 64x1x28x28->32 k3 s1 p1 f+b"]
    row = result["rows"][0]
    assert row["fastdl_ms"] > 0 and row["numpy_ms"] > 0 and row["flops"] > 0
    assert result["machine"]["sgemm_peak_gflops"] > 0 and result["machine"]["copy_gbs"] > 0
    table = bench.format_table(result)
    assert "1 thread(s), quiet" in table and "GFLOP/s" in table


def test_cli_writes_json_and_runs_loaded(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--only", "relu", "--threads", "1", "--repeats", "1", "--load", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["load"] == 1 and result["rows"] and result["rows"][0]["name"].startswith("relu")
    assert "1 busy process(es) competing" in capsys.readouterr().out


def test_busy_processes_stop_on_exit():
    with bench.busy_processes(1) as busy:
        assert all(p.is_alive() for p in busy.processes)
    assert not any(p.is_alive() for p in busy.processes)


@pytest.mark.parametrize("family", bench.FAMILIES)
def test_every_family_lists_its_cases(family):
    import importlib
    module = importlib.import_module(f"fastdl.bench.{family}")
    assert callable(module.cases)
