import pytest


@pytest.fixture(autouse=True)
def _ray(ray_session):
    """Every integration test runs on the shared Ray session."""
    return ray_session
