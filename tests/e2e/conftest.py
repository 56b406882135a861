from tests.dbfixtures import database

__all__ = ["database"]
