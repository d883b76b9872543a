"""Backups and disaster recovery: logical dumps, WAL archive and PITR, streaming replicas."""
