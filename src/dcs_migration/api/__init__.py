"""The HTTP API: DCS-shaped schemas, DCS error codes, and SDK request-signature auth.

`errors`, `schemas` and `auth` need neither the database nor the executor. The routers
build on them and on `deps` (the service's parts, the signed caller, the request body),
never on `app`, which assembles the routers.
"""
