"""Everything that writes the database: migrations, the batch writer, dead letters, jobs."""
