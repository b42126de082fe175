"""The HTTP routes, one module per resource; each has an ``add_*_routes(app, wiring)`` that
:func:`lookalike.server.app.create_app` calls:

- :mod:`.pages`: the web page, its static files, ``/docs``, ``/health`` and ``/metrics``;
- :mod:`.search`: ``/embed``, ``/search`` and ``/items/{id}/similar``;
- :mod:`.browse`: ``GET /items`` (a page of items) and ``GET /labels`` (with counts);
- :mod:`.items`: adding, reading and removing items, their images and thumbnails;
- :mod:`.common`: what they share (API-key checks, reading uploads, short reads).
"""
