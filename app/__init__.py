"""hotline: a 10086-style customer-service bot server.

Folders: `menu/` is the pure menu engine and its loader, `net/` the asyncio network layer,
`server.py` the lifecycle, `cli.py` the `hotline` command.
"""

__version__ = "0.1.0"
