"""A fast path below SQLAlchemy's per-statement machinery, for the statements of hot paths.

``Connection.execute`` of a cached Core statement costs tens of microseconds of Python
(execution context, parameter processing, result metadata) and ``engine.begin()`` as much
again (connection and transaction objects, events), against a few microseconds for the DBAPI
call itself; a VM create runs dozens of statements. Here a Core statement that is built once
(a module constant) is compiled once per parameter shape for the node's dialect; running it
then costs the DBAPI call and a few look-ups::

    with db.fast() as conn:                  # one transaction, committed on leaving the block
        row = conn.execute(SELECT_VM, {"uuid": uuid}).first()
        conn.execute(UPDATE_VM, {"_uuid": uuid, "state": "Running"})

The statements run on a DBAPI connection checked out of the engine's pool (with its pre-ping),
in one transaction that commits when the block ends and rolls back when it raises, exactly as
``engine.begin()`` does on each backend. The SQL and bound values are SQLAlchemy's own: the
compiled statement's text, its bind processors, the bound literals of the statement, and the
columns' Python-side defaults and ``onupdate`` values. DBAPI errors are raised as SQLAlchemy's
exceptions (``IntegrityError`` ...), so callers catch the same types. Rows have the columns as
attributes and a ``_mapping``, like Core rows.

Expanding ``IN`` lists are rendered per execution by SQLAlchemy's own expansion. Not
supported (``TypeError`` when compiled): ``RETURNING``, callable bound values, SQL-side
defaults that would need prefetching, and expanding parameters in ``executemany``.
"""

from __future__ import annotations

import asyncio.tasks
import datetime as dt
import logging
import re
import threading
import time
import weakref
from asyncio import _get_running_loop as _running_loop
from asyncio import current_task as _current_task
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any, cast

from sqlalchemy import exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

Params = dict[str, Any]
log = logging.getLogger("zmn.db")


class FastStatement:
    """One Core statement compiled for one dialect and one set of parameter keys."""

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str], many: bool) -> None:
        if getattr(statement, "is_insert", False) and not getattr(statement, "_returning", ()):
            # the fast path returns no rows: no implicit RETURNING of a generated key (which
            # PostgreSQL would otherwise get for an autoincrement table such as audit_log)
            statement = statement.inline()
        compiled: Any = statement.compile(
            dialect=dialect, column_keys=list(keys), for_executemany=many
        )
        dml = compiled.isinsert or compiled.isupdate or compiled.isdelete
        if dml and (compiled._result_columns or getattr(statement, "_returning", ())):
            raise TypeError(f"fastsql: RETURNING is not supported: {compiled}")
        # expanding IN lists render per execution (SQLAlchemy's own expansion)
        self.expanding: Any = None
        if compiled.post_compile_params or compiled.literal_execute_params:
            if many:
                raise TypeError(f"fastsql: expanding parameters in executemany: {compiled}")
            self.expanding = compiled
        self.sql: str = compiled.string
        self.writes = not _SELECT.match(self.sql)  # a savepoint first (TurnTransaction.block)
        self.positional = compiled.positiontup is not None
        processors = compiled._bind_processors
        escaped = compiled.escaped_bind_names or {}
        by_name = {name: bp for bp, name in compiled.bind_names.items()}
        names = compiled.positiontup if self.positional else list(by_name)
        self.names = [escaped.get(name, name) for name in names]  # as sent to the driver
        # per bound value, in order: the caller's key and the statement's literal value
        self.keyed: list[tuple[str, Any]] = []
        self.required: frozenset[str] = frozenset(
            by_name[name].key for name in names if by_name[name].required
        )
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            bp = by_name[name]
            if bp.callable:
                raise TypeError(f"fastsql: callable bound value {bp.key} in {compiled}")
            self.keyed.append((bp.key, None if bp.required else bp.value))
            process = processors.get(name)
            if process is not None:
                self.processors.append((index, _faster(bp.type, dialect, process)))
        # Python-side column defaults (insert) and onupdate values (update) the caller left out
        self.defaults: list[tuple[str, Callable[[], Any]]] = []
        for column in compiled.insert_prefetch:
            self.defaults.append((column.key, _default_fn(column.default, column)))
        for column in compiled.update_prefetch:
            self.defaults.append((column.key, _default_fn(column.onupdate, column)))
        self.row: Any = None
        self.results: list[Callable[[Any], Any] | None] = []
        if compiled._result_columns:
            fields = [entry.keyname for entry in compiled._result_columns]
            if not all(f.isidentifier() for f in fields):
                raise TypeError(f"fastsql: result columns {fields} are not all identifiers")
            self.row = _row_class(tuple(fields))
            self.results = [
                entry.type._cached_result_processor(dialect, None)
                for entry in compiled._result_columns
            ]
            if not any(self.results):
                self.results = []
        # an expanding statement's SQL and value order depend only on its lists' lengths (the
        # keys given are this object's own): planned once per lengths (SQLAlchemy's expansion
        # re-renders the SQL every time)
        self._plans: dict[tuple[int, ...], tuple[str, list[tuple[Any, int, Any]]] | None] = {}
        self._lists: tuple[str, ...] = ()
        if self.expanding is not None and self.positional and not compiled.literal_execute_params:
            self._lists = tuple(sorted({bp.key for bp in compiled.post_compile_params}))
        self.args: Callable[[Params], Any] = (
            (self._planned_args if self._lists else self._slow_args)
            if self.expanding is not None
            else _args_function(self)
        )
        self.rows: Callable[[list[Any]], list[Any]] = (
            _rows_function(self) if self.row is not None else list
        )

    def _with_defaults(self, params: Params) -> Params:
        """``params`` with the Python-side defaults of the columns the caller left out."""
        if not self.defaults:
            return params
        params = dict(params)
        for key, make in self.defaults:
            if key not in params:
                params[key] = make()
        return params

    def _slow_args(self, params: Params) -> Any:
        """What the generated :attr:`args` does, for a statement with expanding parameters."""
        return self._expanded(self._with_defaults(params))

    def _planned_args(self, params: Params) -> Any:
        """:meth:`_slow_args` by the plan made for these list lengths."""
        params = self._with_defaults(params)
        try:
            lengths = tuple([len(params[key]) for key in self._lists])
        except (KeyError, TypeError):  # a list left out or not a list: SQLAlchemy says why
            return self._expanded(params)
        plan = self._plans.get(lengths, _MISSING)  # (a statement's keys are fixed per shape)
        if plan is _MISSING:
            plan = self._plans[lengths] = self._plan(params)
        if plan is None:
            return self._expanded(params)
        sql, slots = cast(tuple[str, list[tuple[Any, int, Any]]], plan)
        values = []
        for key, index, process in slots:
            if index == _CONSTANT:
                values.append(key)  # a literal of the statement, processed when planned
                continue
            value = params[key] if index < 0 else params[key][index]
            values.append(value if process is None or value is None else process(value))
        return sql, tuple(values)

    def _plan(self, params: Params) -> tuple[str, list[tuple[Any, int, Any]]] | None:
        """Expand once with a marker per value, to learn where each value goes: the caller's
        value (a marker came back) or the statement's own literal (anything else). None when
        a list's values do not come back as themselves (e.g. a tuple IN): that statement
        expands as SQLAlchemy does, every time."""
        marked: dict[str, Any] = {}
        for key, value in params.items():
            if key in self._lists:
                marked[key] = [_Slot(key, i) for i in range(len(value))]
            else:
                marked[key] = _Slot(key, -1)
        state = self.expanding.construct_expanded_state(marked)
        if state.positiontup is None:
            return None
        slots: list[tuple[Any, int, Any]] = []
        found = 0
        for name in state.positiontup:
            slot = state.parameters.get(name)
            process = state.processors.get(name)
            if type(slot) is _Slot:
                found += slot.index >= 0
                slots.append((slot.key, slot.index, process))
            elif isinstance(slot, (list, tuple)):
                return None
            else:
                literal = slot if process is None or slot is None else process(slot)
                slots.append((literal, _CONSTANT, None))
        if found != sum(len(params[key]) for key in self._lists):
            return None  # some list value did not come back as itself
        return state.statement, slots

    def _missing(self, params: Params) -> exc.ArgumentError | None:
        """The error for required parameters the caller left out (None: none is missing)."""
        missing = sorted(self.required - params.keys())
        if not missing:
            return None
        return exc.ArgumentError(f"fastsql: no value for bound parameter(s) {missing}")

    def _expanded(self, params: Params) -> tuple[str, Any]:
        state = self.expanding.construct_expanded_state(params)
        procs, values = state.processors, state.parameters

        def value(name: str) -> Any:
            v, process = values[name], procs.get(name)
            return v if process is None or v is None else process(v)

        if state.positiontup is not None:
            return state.statement, tuple(value(n) for n in state.positiontup)
        return state.statement, {n: value(n) for n in values}


def _args_function(fast: FastStatement) -> Callable[[Params], Any]:
    """The parameters as the driver takes them (a tuple or a dict), by a function generated for
    this statement: each bound value read from the caller's dict (or the statement's literal),
    a missing column's Python default made once, the bind processor applied to a value that is
    not None. A straight-line function is about twice as fast as the loops it replaces."""
    env: dict[str, Any] = {"_M": _MISSING, "missing": fast._missing}
    lines = ["def args(params):", "    get = params.get"]
    made: set[str] = set()
    defaults = dict(fast.defaults)
    for i, (key, make) in enumerate(fast.defaults):
        if key in made:
            continue
        made.add(key)
        env[f"_d{i}"] = make
        lines += [
            f"    v{i} = get({key!r}, _M)",
            f"    if v{i} is _M:",
            f"        v{i} = _d{i}()",
        ]
    default_var = {key: f"v{i}" for i, (key, _make) in enumerate(fast.defaults)}
    processors = dict(fast.processors)
    exprs = []
    for index, (key, literal) in enumerate(fast.keyed):
        if key in defaults:
            value = default_var[key]
        elif key in fast.required:
            value = f"params[{key!r}]"
        else:
            env[f"_l{index}"] = literal
            value = f"get({key!r}, _l{index})"
        process = processors.get(index)
        if process is not None:
            env[f"_p{index}"] = process
            value = f"(None if (_w := {value}) is None else _p{index}(_w))"
        exprs.append(value)
    if fast.positional:
        body = "(" + "".join(f"{e}, " for e in exprs) + ")"
    else:
        body = "{" + ", ".join(f"{n!r}: {e}" for n, e in zip(fast.names, exprs, strict=True)) + "}"
    lines += [
        "    try:",
        f"        return {body}",
        "    except KeyError:",
        "        err = missing(params)",
        "        if err is None:",
        "            raise",  # a KeyError of a bind processor's own
        "        raise err from None",
    ]
    exec("\n".join(lines), env)  # noqa: S102 - source built above from column keys (repr'd)
    return cast(Callable[[Params], Any], env["args"])


def _rows_function(fast: FastStatement) -> Callable[[list[Any]], list[Any]]:
    """Rows of the statement's row class from the driver's tuples, the result processors
    applied, by a function generated for this statement."""
    env: dict[str, Any] = {"_new": tuple.__new__, "_Row": fast.row}
    if not fast.results:
        values = "r"
    else:
        parts = []
        for i, process in enumerate(fast.results):
            if process is None:
                parts.append(f"r[{i}]")
            else:
                env[f"_p{i}"] = process
                parts.append(f"_p{i}(r[{i}])")
        values = "(" + "".join(f"{p}, " for p in parts) + ")"
    exec(f"def rows(raw):\n    return [_new(_Row, {values}) for r in raw]", env)  # noqa: S102
    return cast(Callable[[list[Any]], list[Any]], env["rows"])


_MISSING = object()


_CONSTANT = -2  # a plan's slot index: the statement's own literal value


class _Slot:
    """Where one bound value of an expanding statement comes from (a plan's marker)."""

    __slots__ = ("index", "key")

    def __init__(self, key: str, index: int) -> None:
        self.key, self.index = key, index


def _faster(type_: Any, dialect: Dialect, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's default DATETIME text, written by ``isoformat`` (the same characters for a
    naive datetime) instead of a ``%`` format of seven fields; else the processor itself."""
    impl = type_.dialect_impl(dialect)
    if not (isinstance(impl, sqlite.DATETIME) and impl._storage_format == _SQLITE_FORMAT):
        return process

    def iso(value: Any) -> Any:
        if type(value) is dt.datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return process(value)

    return iso


_SQLITE_FORMAT = sqlite.DATETIME._storage_format


def _default_fn(default: Any, column: Any) -> Callable[[], Any]:
    if default is None:
        raise TypeError(f"fastsql: column {column.key} is prefetched but has no Python default")
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        fn = default.arg  # SQLAlchemy wraps a zero-argument function to take the context
        return lambda: fn(None)
    raise TypeError(f"fastsql: column {column.key} has a default that runs SQL")


def _row_class(fields: tuple[str, ...]) -> Any:
    make: Any = namedtuple  # the columns are known at run time only
    base: Any = make("FastRow", fields)

    def mapping(self: Any) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    return type("FastRow", (base,), {"__slots__": (), "_mapping": property(mapping)})


class FastResult:
    """Rows of one statement, read at once (Core's ``Result`` for the calls the node makes)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise exc.NoResultFound("no row") if not self._rows else exc.MultipleResultsFound()
        return self._rows[0]

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> FastResult:
        return FastResult([r[0] for r in self._rows], self.rowcount)


class FastConnection:
    """Statements of one transaction on one DBAPI connection (see the module docstring)."""

    def __init__(
        self, dbapi_connection: Any, cache: StatementCache, turn: TurnTransaction | None = None
    ) -> None:
        self.dbapi_connection = dbapi_connection
        self.cursor = dbapi_connection.cursor()
        self.cache = cache
        self.turn = turn  # a loop thread's kept connection: its blocks' savepoints are lazy

    def execute(self, statement: Any, params: Params | list[Params] | None = None) -> FastResult:
        one: Params = (params[0] if params else {}) if isinstance(params, list) else params or {}
        many = isinstance(params, list) and len(params) > 1
        fast = self.cache.get(statement, one, many)
        turn = self.turn
        if fast.writes and turn is not None and turn.saved < turn.depth:
            turn.savepoints()
        sql = fast.sql
        if many:
            args: Any = [fast.args(p) for p in cast(list[Params], params)]
        elif fast.expanding is not None:
            sql, args = fast.args(one)
        else:
            args = fast.args(one)
        cursor = self.cursor
        try:
            if many:
                cursor.executemany(sql, args)
            else:
                cursor.execute(sql, args)
            raw = cursor.fetchall() if fast.row is not None else []
        except self.cache.dbapi_error as err:
            raise exc.DBAPIError.instance(
                sql,
                args,
                err,
                self.cache.dbapi_error,
                dialect=self.cache.dialect,
            ) from err
        return FastResult(fast.rows(raw) if raw else [], cursor.rowcount)

    def scalars(self, statement: Any, params: Params | None = None) -> FastResult:
        return self.execute(statement, params).scalars()

    def scalar(self, statement: Any, params: Params | None = None) -> Any:
        return self.execute(statement, params).scalar()


AnyConnection = Connection | FastConnection
"""Helpers that run in either kind of transaction take this."""


class StatementCache:
    """Compiled statements of one engine, by statement and parameter keys; a statement's
    entries go when the statement does (statements built per call are not kept).

    With ``keep`` (a SQLite file) each thread keeps one DBAPI connection for its fast
    transactions instead of a pool checkout per transaction: SQLite keeps a page cache per
    connection and drops it when another connection wrote, and a file connection cannot go
    stale. A block opened inside another of the same thread takes a pooled connection (the
    outer one's transaction stays its own). Server databases always use the pool (its
    pre-ping replaces a connection the server dropped).
    """

    def __init__(self, engine: Engine, *, keep: bool = False) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.dbapi_error: Any = engine.dialect.loaded_dbapi.Error
        # id(statement) -> (a weak reference to it, its compiled shapes); the entry goes with
        # the statement (statements built per call are not kept)
        self._compiled: dict[int, tuple[Any, dict[Any, FastStatement]]] = {}
        self.keep = keep
        # when a thread without a loop last began a write through SQLAlchemy (monotonic s),
        # 0 once every such thread's transaction has ended
        self.writer_at = 0.0
        self._writers: set[int] = set()  # those threads, while their transaction is open
        self._local: threading.local | None = threading.local() if keep else None
        self._kept: list[Any] = []  # every thread's kept pool connection, closed by close()
        self._turns: list[TurnTransaction] = []  # and their turn transactions
        self._lock = threading.Lock()

    def get(self, statement: Any, params: Params, many: bool) -> FastStatement:
        ident = id(statement)
        entry = self._compiled.get(ident)
        if entry is None or entry[0]() is not statement:
            compiled = self._compiled

            def forget(_ref: Any) -> None:
                if compiled.get(ident) is entry:
                    del compiled[ident]

            entry = self._compiled[ident] = (weakref.ref(statement, forget), {})
        shapes = entry[1]
        key = (tuple(params), many)
        fast = shapes.get(key)
        if fast is None:
            fast = shapes[key] = FastStatement(statement, self.dialect, tuple(params), many)
        return fast

    def begin(self) -> AbstractContextManager[FastConnection]:
        """One transaction: committed when the block ends, rolled back when it raises.

        On the thread of a running event loop with a kept connection, the block is a savepoint
        of the loop turn's shared transaction instead (see :class:`TurnTransaction`)."""
        local = self._local
        if local is None:
            return self._pooled()
        turn: TurnTransaction | None = getattr(local, "turn", None)
        if turn is None:
            turn = local.turn = TurnTransaction(self)
        loop = _running_loop()
        if loop is not None:
            return turn.block(loop)
        if turn.busy:
            return self._pooled()
        return self._own(turn)

    @contextmanager
    def _own(self, turn: TurnTransaction) -> Iterator[FastConnection]:
        """A block of a thread without a running loop: its own transaction."""
        if turn.open:  # this thread's loop has ended with a turn's writes not committed
            turn.commit()
        conn = turn.connection()
        turn.busy = True
        dbapi = conn.dbapi_connection
        try:
            yield conn
            dbapi.commit()
        except BaseException:
            dbapi.rollback()
            raise
        finally:
            turn.busy = False

    def before_commit(self, key: Any, hook: Callable[[FastConnection | None], None]) -> bool:
        """Have ``hook(conn)`` run in the running loop's turn transaction right before it
        commits (opening one when none is), or ``hook(None)`` when its writes are lost; once
        per ``key`` and transaction. The calling task is told of a lost commit as for its
        blocks (:func:`check_lost`).

        False where there is no turn transaction (a server database, a thread without a
        loop, a turn that commits block by block while a thread waits to write): the caller
        writes on its own then."""
        local = self._local
        loop = _running_loop()
        if local is None or loop is None:
            return False
        turn: TurnTransaction | None = getattr(local, "turn", None)
        if turn is None or not turn.open or turn.loop is not loop or turn.short:
            with self.begin():  # opens the turn's transaction (an empty savepoint)
                pass
            turn = local.turn
            if not turn.open:  # committed with the block: a thread waits to write
                return False
        if key not in turn.hooks:
            turn.hooks[key] = hook
        task = _TASKS.get(loop) if _TASKS is not None else _current_task(loop)
        if task is not None:
            turn.tasks.append(task)
        return True

    def keep_connection(self, turn: TurnTransaction) -> FastConnection:
        raw: Any = self.engine.raw_connection()
        with self._lock:
            self._kept.append(raw)
            self._turns.append(turn)
        return FastConnection(raw, self, turn)

    def before_sqlalchemy(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        """An engine event: a statement through SQLAlchemy on this thread commits the turn's
        transaction first (it holds SQLite's write lock; another connection's write would wait
        for it on the very thread that has to commit it)."""
        turn: TurnTransaction | None = getattr(self._local, "turn", None)
        if turn is None or not turn.open:
            if _running_loop() is None and not _READING.match(statement):
                self.writer_at = time.monotonic()  # a thread wants SQLite's write lock
                self._writers.add(threading.get_ident())
            return
        if turn.depth == 0:
            turn.commit()
        elif not _READING.match(statement):
            raise RuntimeError(
                "fastsql: a SQLAlchemy write inside a db.fast() block on the event loop's"
                " thread would wait for the block's own transaction; use the block's connection"
            )

    def after_sqlalchemy_transaction(self, _conn: Any) -> None:
        """An engine event (commit, rollback): a thread's write transaction has ended, so the
        loop's blocks no longer need to give the write lock back after each one."""
        if self._writers:
            self._writers.discard(threading.get_ident())
            if not self._writers:
                self.writer_at = 0.0

    @contextmanager
    def _pooled(self) -> Iterator[FastConnection]:
        raw: Any = self.engine.raw_connection()
        try:
            yield FastConnection(raw, self)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()

    def close(self) -> None:
        """Give the kept connections back to the pool (before the engine is disposed)."""
        with self._lock:
            kept, self._kept = self._kept, []
            turns, self._turns = self._turns, []
        for turn in turns:  # the node stops: what its last turn wrote is committed
            turn.depth = 0
            turn.commit()
        self._local = threading.local() if self._local is not None else None
        for raw in kept:
            raw.close()


class TurnTransaction:
    """The transaction the ``db.fast()`` blocks of one event-loop turn share (SQLite file).

    Every block on the loop's thread is a savepoint of one transaction (``BEGIN IMMEDIATE``:
    it holds SQLite's write lock from its start, so no other writer can slip in between two
    blocks), released when the block ends and rolled back to when it raises; the transaction
    commits at the start of the next turn (``call_soon``), or earlier when anything needs the
    writes visible elsewhere: :func:`settle` (a request to an agent, work handed to a thread),
    a statement through SQLAlchemy on this thread, the node's stop. What only has to wait
    until the writes are durable waits for that commit instead of making one of its own
    (:meth:`after_commit`): the flow records' group commit and the reply to a client
    (:func:`committed`). A create's twenty-odd small transactions become one commit per turn
    for all the creates in flight: fewer commits, fewer WAL frames. A busy loop (other
    callbacks ready) goes further and commits at most once every :data:`GROUP_WINDOW`, so the
    turns of that window share the pages their commit writes; an idle one commits at once.

    Nothing is acknowledged before its commit. A commit that fails (disk full, I/O error) or a
    statement error after which SQLite dropped the whole transaction loses the earlier blocks
    of the turn: the tasks that ran them are told at their next block or flow-record write
    (:func:`check_lost`), so their flows fail and roll back instead of going on over lost rows.
    A block nested in another on this thread is a nested savepoint (it commits with the outer
    block's transaction), not a transaction of its own as on other threads.

    Under load the loop would hold the write lock almost all the time, turn after turn, and a
    thread of the node that writes through SQLAlchemy (the membership beat) would wait in
    SQLite's busy handler until its timeout. So when such a thread begins a write, the loop's
    blocks commit one by one until that thread's transaction ends (at most for
    :data:`WRITER_WINDOW` seconds: a transaction per block, as without turn transactions) and
    the lock is free between them.
    """

    def __init__(self, cache: StatementCache) -> None:
        self.cache = cache
        self.thread = threading.get_ident()
        self.conn: FastConnection | None = None
        self.open = False
        self.busy = False  # a block of a worker thread's own transaction is running
        self.depth = 0  # loop-thread blocks running (nested ones count)
        self.saved = 0  # of those, the outermost ones whose savepoints were made
        self.short = False  # commit when the outermost block ends (a thread waits to write)
        self.tasks: list[Any] = []  # the tasks whose blocks the open transaction holds
        self.waiters: list[Callable[[Exception | None], None]] = []  # told when it ends
        # writes that go in right before the commit (StatementCache.before_commit), by key
        self.hooks: dict[Any, Callable[[FastConnection | None], None]] = {}
        self.loop: Any = None  # the loop whose turn opened the transaction
        self.committed_at = 0.0  # monotonic time of the last commit (the loop's clock)
        turns = getattr(_THREAD, "turns", None)
        if turns is None:
            turns = _THREAD.turns = weakref.WeakSet()
        turns.add(self)

    def connection(self) -> FastConnection:
        if self.conn is None:
            self.conn = self.cache.keep_connection(self)
        return self.conn

    @contextmanager
    def block(self, loop: Any) -> Iterator[FastConnection]:
        if _LOST_DATA:  # the dict under the weak one: its len() is Python code
            check_lost()
        conn = self.conn or self.connection()
        cursor = conn.cursor
        writer_at = self.cache.writer_at
        if writer_at and loop.time() - writer_at < WRITER_WINDOW:
            # another thread waits for the write lock: give it back after each block, as
            # holding it for whole turns back to back under load would starve that thread
            self.short = True
            if self.open and not self.depth:
                self.commit()
        if self.open and self.loop is not loop and not self.depth:
            self.commit()  # opened under a loop that has ended: its commit will never run
        if not self.open:
            cursor.execute("BEGIN IMMEDIATE")
            self.open = True
            self.loop = loop
            loop.call_soon(self._commit_at_turn, loop)
        task = _TASKS.get(loop) if _TASKS is not None else _current_task(loop)
        if task is not None:
            self.tasks.append(task)
        # the block's savepoint is made by its first write (FastConnection.execute): a block
        # that only reads needs none, and most blocks only read
        depth = self.depth = self.depth + 1
        try:
            yield conn
            if self.saved >= depth:
                cursor.execute(_RELEASE[depth] if depth < 8 else f"RELEASE fast{depth}")
        except BaseException as err:
            if not conn.dbapi_connection.in_transaction:
                if isinstance(err, Exception):  # SQLite dropped the whole transaction
                    self._lose(err)
            elif self.saved >= depth:
                cursor.execute(f"ROLLBACK TO fast{depth}")
                cursor.execute(f"RELEASE fast{depth}")
            raise
        finally:
            self.depth = depth - 1
            if self.saved > self.depth:
                self.saved = self.depth
            if self.short and not self.depth:
                self.short = False
                self.commit()

    def savepoints(self) -> None:
        """Make the savepoints of the running blocks that have none yet (before a write)."""
        cursor = self.conn.cursor if self.conn is not None else None
        if cursor is None:
            return
        while self.saved < self.depth:
            self.saved += 1
            depth = self.saved
            cursor.execute(_SAVEPOINT[depth] if depth < 8 else f"SAVEPOINT fast{depth}")

    def _commit_at_turn(self, loop: Any) -> None:
        if self.depth and self.open:  # a block awaits inside (a bug): not before it ends
            loop.call_soon(self._commit_at_turn, loop)
            return
        if (
            self.open
            and getattr(loop, "_ready", None)  # other callbacks wait: the loop is busy
            and loop.time() - self.committed_at < GROUP_WINDOW
        ):
            # a busy loop commits at most once a window: the creates of several turns share
            # the pages their commit writes; waiting callers are woken when it is made
            loop.call_soon(self._commit_at_turn, loop)
            return
        self.commit()

    def commit(self) -> Exception | None:
        """Commit the open transaction now (nothing to do when none is open or a block runs);
        returns the error when the commit failed (its writes are lost, their tasks told)."""
        if not self.open or self.depth or self.conn is None:
            return None
        dbapi = self.conn.dbapi_connection
        try:
            if self.hooks:
                hooks, self.hooks = self.hooks, {}
                for hook in hooks.values():
                    hook(self.conn)
            self.open = False
            dbapi.commit()
        except Exception as err:
            log.error("a loop turn's transaction failed to commit; its writes are lost: %s", err)
            self._lose(err)
            try:
                dbapi.rollback()
            except Exception:  # the connection is gone: the pool replaces it
                log.exception("rollback after a failed commit")
            return err
        self.tasks.clear()
        self.committed_at = time.monotonic()
        if self.waiters:
            self._wake(None)
        return None

    def after_commit(self, then: Callable[[Exception | None], None]) -> None:
        """Call ``then(None)`` when the open transaction commits, ``then(error)`` when its
        writes are lost."""
        self.waiters.append(then)

    def _wake(self, err: Exception | None) -> None:
        waiters, self.waiters = self.waiters, []
        for then in waiters:
            try:
                then(err)
            except Exception:  # one waiter's bug must not keep the others waiting
                log.exception("a commit waiter failed")

    def _lose(self, err: Exception) -> None:
        self.open = False
        if self.hooks:
            hooks, self.hooks = self.hooks, {}
            for hook in hooks.values():
                try:
                    hook(None)
                except Exception:  # the writes are lost either way
                    log.exception("a before-commit hook failed to drop its lost writes")
        for task in self.tasks:
            _LOST[task] = err
        self.tasks.clear()
        self._wake(err)


GROUP_WINDOW = 0.005
"""Seconds: while other callbacks are ready, a turn's transaction commits no sooner than this
after the last commit (and at the first turn after it); an idle loop commits at once."""
WRITER_WINDOW = 0.5
"""Seconds after a thread began a write during which the loop's blocks commit one by one
(sooner over when the thread's transaction ends)."""
_READING = re.compile(r"\s*(SELECT|PRAGMA|WITH)\b", re.IGNORECASE)
_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_SAVEPOINT = [f"SAVEPOINT fast{depth}" for depth in range(8)]
_RELEASE = [f"RELEASE fast{depth}" for depth in range(8)]
# loop -> its running task: CPython's own table (a dict look-up; current_task() is Python code)
_TASKS: dict[Any, Any] | None = getattr(asyncio.tasks, "_current_tasks", None)
_THREAD = threading.local()  # .turns: this thread's turn transactions (a WeakSet, one per database)
_LOST: weakref.WeakKeyDictionary[Any, Exception] = weakref.WeakKeyDictionary()
"""Tasks whose writes a failed turn transaction lost, with the error (told once)."""
_LOST_DATA: dict[Any, Exception] = _LOST.data  # type: ignore[attr-defined]


def settle() -> Exception | None:
    """Commit this thread's open turn transactions now: called before anything that lets the
    outside see this turn's writes (a reply, a request to an agent, work for a thread).
    Returns the error of a commit that failed (its writes are lost)."""
    failed: Exception | None = None
    for turn in list(getattr(_THREAD, "turns", ())):
        if turn.open:
            failed = turn.commit() or failed
    return failed


def check_lost() -> None:
    """Raise in a task whose earlier writes were lost with a failed turn transaction."""
    if not _LOST:
        return
    task = _current_task() if _running_loop() is not None else None
    if task is not None and task in _LOST:
        err = _LOST.pop(task)
        raise exc.OperationalError("commit of this task's earlier writes", None, err) from err


def durable() -> None:
    """:func:`settle`, then raise in this task if its writes were lost: before a reply."""
    settle()
    if _LOST:
        check_lost()


def open_turn() -> TurnTransaction | None:
    """This thread's turn transaction that holds uncommitted writes (None: nothing open)."""
    turn: TurnTransaction
    for turn in getattr(_THREAD, "turns", ()):
        if turn.open:
            return turn
    return None


def when_committed(then: Callable[[Exception | None], None]) -> None:
    """Call ``then(None)`` once what this thread's loop turns wrote so far is committed, or
    ``then(error)`` if it was lost: at the turn's own commit when one transaction of the
    running loop is open, else at once (after committing whatever else is open)."""
    turns = [turn for turn in getattr(_THREAD, "turns", ()) if turn.open]
    if len(turns) == 1 and turns[0].loop is _running_loop():
        turns[0].after_commit(then)
        return
    then(settle())


async def committed() -> None:
    """Back when what this thread's loop turns wrote so far is committed; raise in this task
    if its writes were lost. Unlike :func:`durable` it does not commit now: it waits for the
    turn's own commit, so the replies of one turn share one commit."""
    if _LOST:
        check_lost()
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    when_committed(partial(_settle_future, waiter))
    await waiter


def _settle_future(waiter: asyncio.Future[None], err: Exception | None) -> None:
    if waiter.done():
        return
    if err is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(err)


class SettlingExecutor(ThreadPoolExecutor):
    """The event loop's default executor: work handed to a thread (``asyncio.to_thread``)
    sees what the loop's turn wrote so far (its transaction commits first)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        settle()
        return super().submit(fn, *args, **kwargs)


def settle_before_threads(loop: Any) -> None:
    """Make ``loop``'s default executor a :class:`SettlingExecutor` (once)."""
    if not isinstance(getattr(loop, "_default_executor", None), SettlingExecutor):
        loop.set_default_executor(SettlingExecutor(thread_name_prefix="zmn-worker"))
