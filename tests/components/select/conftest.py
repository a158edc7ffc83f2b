import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# tests/ is on sys.path (rootdir conftest, no __init__.py) and tests/components/ would shadow the
# real `components` package as a namespace package: put the repository first.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))
