"""Times create_db on a 460,723-row IMDB .mat against scipy.io.loadmat alone on the same file.

Each measurement runs in a fresh process, which reports its own wall time and peak memory, so the
two do not share caches or allocations. The .mat is built once and cached in the temp folder.
Goal: create_db at most 1.3 x loadmat's time, peak memory at most loadmat's + 30 %.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import synthetic  # noqa: E402

ROWS = 460_723
CACHE = Path(tempfile.gettempdir()) / "age_gender_bench" / f"imdb_{ROWS}"

MEASURE = """
import json, resource, sys, time
from pathlib import Path
import scipy.io
from age_gender.data import labels
path, task = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
if task == "loadmat":
    scipy.io.loadmat(path)
else:
    table = labels.read_imdb_wiki(path, "imdb", 1.0)
    table.rows.to_csv(path.with_name("imdb.csv"), index=False)
seconds = time.perf_counter() - start
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))
"""


def build_mat() -> Path:
    path = CACHE / "imdb.mat"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"building {path} ({ROWS} rows, once)", flush=True)
        partial = CACHE / "partial.mat"
        synthetic.write_imdb_wiki_mat(partial, "imdb", synthetic.random_imdb_wiki_columns(ROWS))
        partial.rename(path)
    return path


def measure(path: Path, task: str) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), task], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    path = build_mat()
    print(f"file: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    runs = {task: [measure(path, task) for _ in range(3)] for task in ("loadmat", "create_db")}
    best = {task: min(results, key=lambda r: r["seconds"]) for task, results in runs.items()}
    for task, result in best.items():
        seconds, peak = result["seconds"], result["peak_mib"]
        print(f"{task:>10}: {seconds:.2f} s (best of 3), peak {peak:.0f} MiB")
    memory_ratio = best["create_db"]["peak_mib"] / best["loadmat"]["peak_mib"]
    print(f"peak_memory_vs_loadmat: {memory_ratio:.2f}")
    print(f"create_db_vs_loadmat: {best['create_db']['seconds'] / best['loadmat']['seconds']:.2f}")


if __name__ == "__main__":
    main()
