"""The HTTP API: DCS-shaped schemas, DCS error codes, and SDK request-signature auth.

`errors`, `schemas` and `auth` need neither the database nor the task runner; the app and
its routers build on them.
"""
