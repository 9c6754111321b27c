"""The Docker API guard of --enable-docker (docs/architecture.md §10): a filtering proxy on a unix
socket in front of the engine's, so the agent can run sibling containers that cannot escape.

`policy` is the pure core (which calls pass, and how a create is rewritten); `server` is the
asyncio edge; `python -m containers.guard` runs it.
"""
