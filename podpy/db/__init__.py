"""The state database package: `StateDB.open(paths)` (podpy.db.state) over the schema in podpy.db.schema."""
