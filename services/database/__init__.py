"""database service: SQL, migrations, types, advisors and storage views of a tenant database."""
