"""Quality rules stored in PostgreSQL: the catalog of silver columns, the rule store, the gate
the medallion writer calls inside each batch, and rule administration."""
