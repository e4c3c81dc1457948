"""The Postgres wire-protocol client of stack_health: SCRAM-SHA-256 against RFC 7677's test vector,
message framing and error fields. The login against a real Postgres is in
tests/integration/test_stack_health_database.py."""

from __future__ import annotations

import struct

import pytest
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _pgwire


def test_scram_matches_rfc_7677():
    # RFC 7677, section 3: user "user", password "pencil"
    client = _pgwire.ScramClient("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    assert client.first_message() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    assert client.final_message(server_first) == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client.verify_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_scram_refuses_a_server_that_does_not_know_the_password():
    client = _pgwire.ScramClient("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    client.final_message("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(_pgwire.PgProtocolError, match="signature does not match"):
        client.verify_final("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(_pgwire.PgProtocolError, match="refused by the server: invalid-proof"):
        client.verify_final("e=invalid-proof")


def test_scram_refuses_a_nonce_the_client_did_not_start():
    client = _pgwire.ScramClient("pencil", nonce="abc")
    with pytest.raises(_pgwire.PgProtocolError, match="server-first"):
        client.final_message("r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_startup_message_framing():
    data = _pgwire.startup_message("litellm", "keys")
    assert struct.unpack("!i", data[:4])[0] == len(data)
    assert struct.unpack("!i", data[4:8])[0] == 196608
    assert data[8:] == b"user\0litellm\0database\0keys\0application_name\0llmops-stack-health\0\0"
    assert _pgwire.message(b"X") == b"X\0\0\0\x04"


def test_error_fields_and_sqlstate():
    fields = _pgwire.error_fields(b"SFATAL\0C28P01\0Mpassword authentication failed for user \"litellm\"\0\0")
    error = _pgwire.PgError(fields)
    assert error.sqlstate == "28P01"
    assert str(error) == 'FATAL 28P01: password authentication failed for user "litellm"'
