"""Where the tests find this checkout and the shared MULAN data."""

import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
#: small committed files the tests read (saved checkpoints of earlier formats)
DATA = os.path.join(TESTS, "data")


def shared_data_dir():
    """The MULAN folder: $D2ACE_DATA_DIR, else ../shared/data beside the checkout."""
    folder = os.environ.get("D2ACE_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")
    return folder if os.path.isdir(folder) else None
