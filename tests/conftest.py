import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never read or write the user's run store or calibration records.
os.environ["TUNING_ADVISOR_HOME"] = tempfile.mkdtemp(prefix="tuning-advisor-tests-")
