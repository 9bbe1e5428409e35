"""Routing, in the order a request meets it.

A request reaches :class:`~inference_core.router.Router` (``chat`` / ``complete`` /
``embed``), which asks the :class:`~.planner.Planner` for the ordered list of
:class:`~.planner.Step` (backend, model) to try.  The planner reads the
:class:`~.catalog.ModelCatalog` (what each backend serves, under which names) and the declared
model fallbacks; a name nobody serves is :class:`~inference_core.errors.ModelNotFound` there,
before any backend is called.  The :class:`~.executor.Executor` then walks the steps: one
attempt at a time, with retries, deadlines, breakers and rate-limit memory; a stream's first
chunk is pulled inside that loop and the rest is handed out as a :class:`~.stream.RoutedStream`.
:class:`~.sync.SyncRouter` is the blocking facade over all of it.

Modules: :mod:`.backend` (the router's view of one chain entry), :mod:`.trace` (what happened
to one request), :mod:`.catalog`, :mod:`.planner`, :mod:`.executor`, :mod:`.stream`,
:mod:`.sync`.  Only :mod:`inference_core.router` is public API; these are its parts.
"""
