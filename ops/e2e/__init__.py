"""`python -m ops e2e`: the end-to-end validation guide's scenarios, run against an org slice with faults
injected, evidence archived under ``artifacts/e2e/<timestamp>/`` (see docs/e2e-scenarios.md)."""
