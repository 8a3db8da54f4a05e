"""A Catalina-Sky-Survey-like simulator of transient image sequences (the embedded default data)."""
