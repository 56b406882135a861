from tests.dbfixtures import database, engine

__all__ = ["database", "engine"]
