"""The explorer: a FastAPI app over one built run (``apmae serve``); see :func:`server.app.create_app`."""
