"""The data model: decoded change records and their parts. A leaf: it imports nothing of ours."""
