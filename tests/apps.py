"""The web app for the in-process tests, built once per test process and handed to each test
as new.

create_app spends about 40 ms building the OpenAPI document and compiling the routes, the
same for every test of the API and the console (six hundred of them). What a test can change
is put back before the next: a new scheduler (web.new_scheduler, where tests set the clock
and settings), the config the app was built with, and no extension the app added while it
served (the health and metrics caches). Limits are counted in Redis, which every test
flushes; the database is emptied by the `engine` fixture.

Not put back: a value mutated inside the config (the copy is shallow) or inside an extension
(put back by name only), routes or handlers added, Flask-Limiter's in-memory fallback (used
only when Redis fails) and Jinja's template cache. A test that changes one of these builds
its own app with create_app.
"""

from __future__ import annotations

from flask import Flask

from app import config
from web import context, create_app, new_scheduler

_BUILT: dict[config.Settings, tuple[Flask, dict, frozenset[str]]] = {}


def app_for(settings: config.Settings) -> Flask:
    """create_app(settings) as if new (see above); TESTING is on."""
    built = _BUILT.get(settings)
    if built is None:
        app = create_app(settings)
        app.config["TESTING"] = True
        built = _BUILT[settings] = (app, dict(app.config), frozenset(app.extensions))
    app, initial_config, extensions = built
    app.config.clear()
    app.config.update(initial_config)
    for name in set(app.extensions) - extensions:
        del app.extensions[name]
    app.extensions[context.EXTENSION] = new_scheduler(settings)
    return app
