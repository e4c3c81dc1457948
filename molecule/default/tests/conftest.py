"""Fixtures shared by the testinfra files of molecule/default."""

import pytest


@pytest.fixture(scope="module")
def inventory(host):
    """The instance's inventory variables (group_vars + host_vars); {} with a non-ansible backend."""
    try:
        return host.ansible.get_variables()
    except (AttributeError, RuntimeError):  # not the ansible backend
        return {}
