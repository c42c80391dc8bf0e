# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ``ansible_collections.zerotrust.workloads``.

``make collection`` links the working tree to .collections/ansible_collections/zerotrust/workloads.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO_ROOT / ".collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
