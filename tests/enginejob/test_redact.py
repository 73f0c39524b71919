"""The one redactor every job and the e2e evidence use: what it cuts and what it leaves."""

from __future__ import annotations

import secrets

from enginejob.redact import Redactor
from ops.e2e.redact import Redactor as EvidenceRedactor


def test_longest_first_short_values_left_alone() -> None:
    redact = Redactor(["abcd1234", "abcd1234-and-more", "ab"])
    assert redact("x abcd1234-and-more y abcd1234 ab") == "x [redacted] y [redacted] ab"


def test_pieces_of_a_value_are_cut_when_asked() -> None:
    token = "FlyV1 fm2_" + secrets.token_urlsafe(12)  # made here: no token-like literal in the repository
    cut = Redactor([token], piece=12)
    # A token wrapped onto two lines: each half still holds a 12-character run of it.
    assert token[:14] not in cut(f"{token[:14]}\n{token[14:]}")
    assert cut(f"{token[:14]}\n{token[14:]}").count("[redacted]") == 2
    assert Redactor([token])(f"{token[:14]}\n{token[14:]}") == f"{token[:14]}\n{token[14:]}"  # whole values only
    assert cut(token[6:15]) == token[6:15]  # shorter than a piece: not a proof of the token


def test_the_evidence_redactor_learns_values_and_cuts_tool_arguments() -> None:
    evidence = EvidenceRedactor()
    evidence.add("short")  # under 8 characters: never a token
    minted = "fo1_" + secrets.token_hex(16)
    evidence.add(minted)
    answer = {"token": minted, "secrets": {"K": "v"}, "list": [minted[4:22]],
              "name": "short"}
    assert evidence.value(answer) == {"token": "[redacted]", "secrets": "[redacted]", "list": [f"[redacted]{minted[16:22]}"],
                                      "name": "short"}
