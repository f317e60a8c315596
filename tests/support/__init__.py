"""What tests share that is not a fixture: fakes that stand in for a model, builders of finished runs and reports,
servers and harnesses. Test modules import from here (and helpers from conftest), never from one another; nothing
here is collected (no test_ names). Fixtures live in tests/conftest.py."""
