"""The admin inspector: JSON APIs under /admin/api/ and the pages that use them.

Routed only when Settings.admin_token is set (otherwise /admin is a plain 404).

- base.py: AdminHandler, who is the admin (the token, or the login cookie), and no CORS;
- sessions.py, lockout.py: login sessions in the database, and the wrong-token lockout;
- api.py: the read API and the live view's poke stream; writes.py: server-side writes;
- pages.py: the HTML pages (templates/) and their script and styles (static/);
- routes.py: all of it, for make_app.
"""
