"""The HTTP routes, one module per Masakari resource; each exposes ``router(ctx) -> APIRouter``.

Reads are plain ``def`` routes (FastAPI runs them in its thread pool; store calls are
short transactions). Routes that change segments, hosts or notifications are ``async``
so that they run on the event loop with the engine: ``intake.submit`` and
``intake.reload_membership`` then never race the engine's own work.
"""
