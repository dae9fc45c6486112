"""The node's HTTP face: client API, explorer page and Prometheus metrics (FastAPI on uvicorn).

An engine exposes its committed store through `NodeView` (view.py) and reports events to
`ChainMetrics` (metrics.py); `make_api` (app.py) turns both into the HTTP routes and `serve_api`
(serve.py) runs them. Nothing here knows which consensus engine is underneath.
"""
