"""MongoDB wire protocol store (FerretDB locally): social posts."""
