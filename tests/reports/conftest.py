"""The report tests record their events with the search tests' helpers
(tests/store/kaudit_store_data.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "store"))
