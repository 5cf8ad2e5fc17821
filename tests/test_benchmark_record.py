"""benchmarks/record.py: every benchmark's JSON and markdown carry the command, machine, date and commit."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import benchmark_script


def test_a_record_is_stamped_in_both_files(tmp_path: Path) -> None:
    record = benchmark_script("record")
    out = tmp_path / "results" / "demo.json"
    written = record.save(out, {"speedup": 2.5, "sides": {"before_s": 5.0, "after_s": 2.0}, "runs": [1, 2]},
                          name="demo", log=False)
    data = json.loads(out.read_text())
    assert data == written and data["speedup"] == 2.5 and data["runs"] == [1, 2]
    stamp = data["record"]
    assert set(stamp) == {"command", "machine", "date", "commit"}
    assert stamp["machine"]["cores"] >= 1 and stamp["machine"]["ram_gb"] > 0 and stamp["machine"]["cpu_model"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", stamp["commit"])
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# demo\n") and stamp["commit"] in md and stamp["date"] in md
    assert "| sides.before_s | 5.0 |" in md and "| sides.after_s | 2.0 |" in md  # both sides of the ratio
    record.save(out, {"x": 1}, name="demo", markdown_body="| own | table |\n", log=False)
    assert out.with_suffix(".md").read_text().endswith("| own | table |\n")
