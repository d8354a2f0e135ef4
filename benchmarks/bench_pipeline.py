"""A full `dvc repro` as on a fresh clone: the time of every stage, on the default data.

The project's tracked files (and untracked ones git does not ignore) are copied
into a new git repository under benchmarks/out/pipeline, with no DVC cache and
no outputs, and `dvc repro` runs there once with the installed environment, as
it would right after `make install` on a new machine. Each stage's time runs
from its "Running stage" line to the next stage's; the total includes DVC's
own work (hashing, the lock file).

Usage::

    .venv/bin/python benchmarks/bench_pipeline.py      # about 5 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "pipeline"


def fresh_clone() -> Path:
    repo = OUT / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in listed:
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    (repo / "dvc.lock").unlink(missing_ok=True)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


def main() -> None:
    repo = fresh_clone()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    with subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.match(r"Running stage '([^']+)'", line)
            if found:
                marks.append((found[1], time.perf_counter() - start))
    total = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: dvc repro failed (exit {proc.returncode})")
    ends = [t for _, t in marks[1:]] + [total]
    stages = {name: end - begin for (name, begin), end in zip(marks, ends)}
    for name, seconds in stages.items():
        print(f"{name:15s} {seconds:7.1f} s")
    print(f"{'total':15s} {total:7.1f} s (target <= 300 s)")
    (OUT / "bench_pipeline.json").write_text(
        json.dumps({"stages": stages, "total": total}, indent=2) + "\n")


if __name__ == "__main__":
    main()
