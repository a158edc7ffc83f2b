"""Download conditions (the Python client's, shaped like Firebase ML's ModelDownloadConditions)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeship.delivery.cache import DownloadConditions, NetworkState, env_network_state


@given(cellular=st.booleans(), expensive=st.booleans(), constrained=st.booleans(),
       allow=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       free=st.integers(0, 10**10), size=st.integers(0, 10**9), keep=st.integers(0, 10**9))
def test_a_download_waits_exactly_when_a_condition_forbids_it(cellular, expensive, constrained, allow,
                                                              free, size, keep):
    conditions = DownloadConditions(*allow, min_free_bytes=keep)
    network = NetworkState(cellular, expensive, constrained)
    forbidden = ((cellular and not allow[0]) or (expensive and not allow[1])
                 or (constrained and not allow[2]) or free - size < keep)
    assert (conditions.blocker(network, free, size) is not None) == forbidden


def test_env_network_state(monkeypatch):
    monkeypatch.delenv("EDGESHIP_NETWORK", raising=False)
    assert env_network_state() == NetworkState()
    monkeypatch.setenv("EDGESHIP_NETWORK", "cellular")
    assert env_network_state() == NetworkState(cellular=True, expensive=True)
    monkeypatch.setenv("EDGESHIP_NETWORK", "wifi,satellite")
    with pytest.raises(ValueError, match="satellite"):
        env_network_state()
