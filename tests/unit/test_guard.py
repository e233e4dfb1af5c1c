"""The suite itself refuses to reach anything but loopback."""

from __future__ import annotations

import os
import socket

import pytest


def test_non_loopback_connections_are_refused() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(ConnectionRefusedError, match="test guard"):
            s.connect(("93.184.216.34", 443))
    finally:
        s.close()


def test_dummy_credentials_and_no_profiles() -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in os.environ
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
