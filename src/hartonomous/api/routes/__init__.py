"""The `/v1` routers, one module per area; each route is thin and calls one service."""
