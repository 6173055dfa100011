"""Tools for menu authors, on the same engine the server runs: chat, graph (diagrams), conversation tests."""
