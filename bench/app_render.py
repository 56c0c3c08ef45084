"""First render of the app and a sidebar change, timed through Streamlit's AppTest (no browser).

    python bench/app_render.py [--repeat 5]

Prints the median and worst wall-clock seconds of (a) a fresh session's first full render (the
import of the app's modules included, as a new browser tab pays it once per server) and (b) a
change of one answer (the GPU), which reruns the script with the recommendation recomputed.
Goal (issue "The app carries the plan"): first render under 3 s on the 2-core dev machine.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    os.environ["TUNING_ADVISOR_HOME"] = tempfile.mkdtemp()
    from streamlit.testing.v1 import AppTest

    first, change = [], []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        at = AppTest.from_file(str(ROOT / "advisor_app.py"), default_timeout=120).run()
        first.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
        t0 = time.perf_counter()
        at.selectbox(key="gpu").set_value("l4" if i % 2 else "h100-sxm").run()
        change.append(time.perf_counter() - t0)
    for name, xs in (("first render", first), ("change the GPU", change)):
        print(f"{name}: median {statistics.median(xs):.2f} s, worst {max(xs):.2f} s over {len(xs)} (goal: first < 3 s)")


if __name__ == "__main__":
    main()
