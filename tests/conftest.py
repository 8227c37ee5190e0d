import pytest

from support.paths import shared_data_dir


@pytest.fixture
def data_dir():
    folder = shared_data_dir()
    if folder is None:
        pytest.skip("MULAN data folder not found: set D2ACE_DATA_DIR or place shared/data beside the checkout")
    return folder
