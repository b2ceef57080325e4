"""docs/configuration.md is generated from the code (services/shared/configdoc.py): it must
match what the generator renders now, and every setting must say what it is."""

from __future__ import annotations

from dataclasses import fields

from services.shared import configdoc
from services.shared.settings import Settings, env_name, load_settings, settings_env


def test_configuration_doc_is_up_to_date() -> None:
    assert configdoc.DOC.read_text() == configdoc.render(), (
        "docs/configuration.md is stale: run `.venv/bin/python -m services.shared.configdoc`"
    )


def test_every_setting_is_documented_and_round_trips() -> None:
    for f in fields(Settings):
        assert f.metadata.get("doc"), f"Settings.{f.name}: add metadata={{'doc': ...}}"
        assert env_name(f.name) in configdoc.DOC.read_text()
    # The variables documented are the ones a child process is given and reads back.
    s = Settings()
    assert load_settings(settings_env(s)) == s


def test_check_mode_reports_staleness(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    monkeypatch.setattr(configdoc, "DOC", stale)
    assert configdoc.main(["--check"]) == 1
    assert stale.read_text() == "old\n"
