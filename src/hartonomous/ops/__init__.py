"""Operations: seed data, the schema smoke test (later health, backups, repair)."""
