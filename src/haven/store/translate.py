"""Mapping SQLAlchemy and driver exceptions to haven's own errors.

Used by Store around every transaction and by Store.open, so that no
SQLAlchemy exception crosses the store's boundary:

- a constraint violation becomes Conflict (retrying will not help);
- a value the database cannot hold (PostgreSQL: a name longer than its
  column, an integer out of range) becomes UserError, since it came from input;
- a value that could not even be sent (not JSON-serialisable, wrong type)
  re-raises the original TypeError or ValueError: a bug in the caller;
- anything else becomes StoreUnavailable: the operator has to look at the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from haven.domain.errors import Conflict, StoreUnavailable, UserError

SQLITE_HINT = (
    "check the HAVEN database URL, that its folder is writable and that the file is a haven database"
)
POSTGRES_HINT = "check the HAVEN database URL and that PostgreSQL is running and accepts connections"
URL_HINT = (
    "use sqlite:////path/to/haven.db (or sqlite:// for memory) "
    "or postgresql+psycopg://user:password@host:5432/haven"
)


def reason(exc: BaseException) -> str:
    """The driver's own words, first line only: no SQL text, no bound parameters."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(original).strip() or type(original).__name__
    return text.splitlines()[0]


@contextmanager
def translate_errors(label: str, hint: str, driver_error: type[Exception] | None = None) -> Iterator[None]:
    """Re-raise database exceptions as Conflict or StoreUnavailable naming ``label`` (a masked URL).

    ``driver_error`` is the DBAPI's base exception class: errors raised by the
    driver inside SQLAlchemy event hooks (the SQLite pragmas) may arrive
    unwrapped.
    """
    unwrapped: tuple[type[Exception], ...] = (driver_error,) if driver_error is not None else ()
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"the database refused the change: {reason(exc)}") from exc
    except DataError as exc:
        raise UserError(f"the database cannot hold a value: {reason(exc)}", "shorten or correct it") from exc
    except StatementError as exc:
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, TypeError | ValueError):
            raise exc.orig from exc  # the parameters never reached the database
        raise StoreUnavailable(f"database {label!r} failed: {reason(exc)}", hint) from exc
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"database {label!r} failed: {reason(exc)}", hint) from exc
    except unwrapped as exc:
        raise StoreUnavailable(f"database {label!r} failed: {reason(exc)}", hint) from exc
