"""Hand-written SQL for the annotator's hot path (authenticate, next task, submit).

Building and compiling an ORM query costs several times the CPU that the database needs to run a
simple one: on the load benchmark (benchmarks/annotate_load.py) it was about a third of the web
server's CPU. The statements of the hot path are therefore written out here once, with their
columns taken from the models, and their rows are turned back into model instances with the
same converters the ORM applies, so the rest of the code sees ordinary instances. The SQL is
portable between PostgreSQL and SQLite except where `postgres` says otherwise.
"""

from django.db import connection


def postgres() -> bool:
    return connection.vendor == "postgresql"


class Columns:
    """All concrete columns of a model under a table alias, and a row of them back to an instance."""

    def __init__(self, model, alias: str):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [field.attname for field in self.fields]
        self.sql = ", ".join(f'{alias}."{field.column}"' for field in self.fields)
        self.alias = alias
        self._converters = None

    def __len__(self) -> int:
        return len(self.fields)

    def converters(self) -> list:
        # Per process: the ORM's own converters for these columns (SQLite's text dates and UUIDs,
        # JSON, booleans), as the compiler would apply them to a SELECT of the same fields.
        if self._converters is None:
            found = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                if functions:
                    found.append((index, functions, column))
            self._converters = found
        return self._converters

    def instance(self, row, start: int = 0):
        values = list(row[start : start + len(self.fields)])
        for index, functions, column in self.converters():
            for function in functions:
                values[index] = function(values[index], column, connection)
        return self.model.from_db(connection.alias, self.names, values)


def one(statement: str, params: dict | None = None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


def all_rows(statement: str, params: dict | None = None) -> list:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def run(statement: str, params: dict | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def db_time(value):
    return connection.ops.adapt_datetimefield_value(value)


def db_json(value):
    return connection.ops.adapt_json_value(value, None)


def db_uuid(value):
    # PostgreSQL has a uuid type; elsewhere Django stores the 32 hex digits.
    return value if connection.features.has_native_uuid_field else value.hex
