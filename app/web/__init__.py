"""The admin port over HTTP: health and metrics, the agent console and the supervisor board in a
browser (static pages, JSON over a WebSocket), and the tickets API. See site.py."""
